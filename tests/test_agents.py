"""Agents: `MetaAlignerMiddleware` in `create_agent`, and `agent | aligner` / `aligner.wrap(agent)`
on the agent's ``{"messages": [...]}`` state. Policy: a fake chat model that calls a tool, then
answers; aligner: the tiny llama model (real generation, no hub)."""

from __future__ import annotations

import pytest

pytest.importorskip("langchain.agents")

from langchain.agents import create_agent  # noqa: E402
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage  # noqa: E402
from langchain_core.tools import tool  # noqa: E402
from fake_chat import ToolFakeChatModel  # noqa: E402

from metaaligner_chain import MetaAlignerRunnable  # noqa: E402
from metaaligner_chain.coerce import context_text  # noqa: E402
from metaaligner_chain.middleware import MetaAlignerMiddleware  # noqa: E402

ANSWER = "It is sunny in Paris, you fool."
CALL = AIMessage(
    "", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "call-1"}]
)
QUESTION = {"messages": [HumanMessage("What is the weather in Paris?")]}


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}."


def _agent(aligner, **kwargs):
    model = ToolFakeChatModel(messages=iter([CALL, AIMessage(ANSWER)] * 4))
    return create_agent(model, tools=[get_weather], **kwargs)


@pytest.fixture(scope="module")
def aligner(tiny_model_dir):
    return MetaAlignerRunnable(
        objectives=["harmlessness", "helpfulness"],
        model=str(tiny_model_dir),
        prompt_format="hh-rlhf",
        max_new_tokens=12,
    )


def _expected(aligner, messages):
    """What the aligner makes of the final answer, with the turns before it as context."""
    return aligner.invoke({"query": messages[:-1], "response": AIMessage(ANSWER)})[
        "response"
    ].content


def _check_state(aligner, state):
    human, call, result, final = state["messages"]
    assert (
        call.tool_calls == CALL.tool_calls and call.content == ""
    )  # the tool-call turn: untouched
    assert "metaaligner" not in call.response_metadata
    assert isinstance(result, ToolMessage) and result.content == "Sunny in Paris."
    info = final.response_metadata["metaaligner"]
    assert info["original"] == ANSWER and info["objectives"] == ["harmlessness", "helpfulness"]
    assert final.content == _expected(aligner, state["messages"])


def test_middleware_aligns_only_the_final_answer(aligner):
    agent = _agent(aligner, middleware=[MetaAlignerMiddleware(aligner=aligner)])
    _check_state(aligner, agent.invoke(QUESTION))


async def test_middleware_async(aligner):
    agent = _agent(aligner, middleware=[MetaAlignerMiddleware(aligner=aligner)])
    _check_state(aligner, await agent.ainvoke(QUESTION))


def test_objectives_per_run_from_the_agent_state(aligner):
    agent = _agent(aligner, middleware=[MetaAlignerMiddleware(aligner=aligner)])
    final = agent.invoke({**QUESTION, "objectives": ["humour"]})["messages"][-1]
    assert final.response_metadata["metaaligner"]["objectives"] == ["humour"]


def test_messages_stream_mode_shows_only_the_aligned_answer(aligner):
    """Under stream_mode="messages" the user receives the aligned tokens, never the model's own
    final answer; the tool-calling turn streams as one chunk carrying the call."""
    agent = _agent(aligner, middleware=[MetaAlignerMiddleware(aligner=aligner)])
    streamed = [
        m
        for m, meta in agent.stream(QUESTION, stream_mode="messages")
        if meta["langgraph_node"] == "model"
    ]
    calls = [m for m in streamed if getattr(m, "tool_call_chunks", None)]
    assert len(calls) == 1 and calls[0].tool_call_chunks[0]["name"] == "get_weather"
    text = "".join(m.content for m in streamed if isinstance(m, AIMessageChunk))
    final = agent.invoke(QUESTION)["messages"][-1]
    assert text == final.content  # the middleware's answer once, never the model's tokens as well
    info = final.response_metadata["metaaligner"]
    assert info["original"] == ANSWER and (text != ANSWER) == info["aligned"]


async def test_messages_stream_mode_async(aligner):
    agent = _agent(aligner, middleware=[MetaAlignerMiddleware(aligner=aligner)])
    stream = agent.astream(QUESTION, stream_mode="messages")
    text = "".join([m.content async for m, meta in stream if meta["langgraph_node"] == "model"])
    final = (await agent.ainvoke(QUESTION))["messages"][-1]
    assert text == final.content and (text != ANSWER) == final.response_metadata["metaaligner"]["aligned"]


def test_updates_stream_mode_shows_the_aligned_message(aligner):
    agent = _agent(aligner, middleware=[MetaAlignerMiddleware(aligner=aligner)])
    updates = [u for u in agent.stream(QUESTION, stream_mode="updates") if "model" in u]
    final = updates[-1]["model"]["messages"][-1]
    assert final.response_metadata["metaaligner"]["original"] == ANSWER


def test_agent_piped_into_the_aligner(aligner):
    agent = _agent(aligner)
    state = (agent | aligner).invoke(QUESTION)
    _check_state(aligner, state)
    with pytest.raises(ValueError, match="per-node updates.*aligner.wrap"):  # no whole state
        list((agent | aligner).stream(QUESTION))


def test_wrapped_agent_streams_its_state_whole(aligner):
    wrapped = aligner.wrap(_agent(aligner))
    (streamed,) = list(wrapped.stream(QUESTION))
    _check_state(aligner, streamed)


def test_wrapped_agent(aligner):
    wrapped = aligner.wrap(_agent(aligner))
    _check_state(aligner, wrapped.invoke(QUESTION))
    assert wrapped.batch([QUESTION])[0]["messages"][-1].content == _expected(
        aligner, wrapped.invoke(QUESTION)["messages"]
    )


def test_a_state_ending_in_a_tool_call_is_left_untouched(aligner):
    state = {"messages": [HumanMessage("Weather?"), CALL]}
    assert aligner.invoke(state) is state


def test_tool_turns_are_written_out_in_the_context():
    messages = [
        HumanMessage("What is the weather in Paris?"),
        CALL,
        ToolMessage("Sunny.", tool_call_id="call-1"),
    ]
    assert context_text(messages, "hh-rlhf") == (
        "\n\nHuman: What is the weather in Paris?"
        '\n\nAssistant: [called get_weather({"city": "Paris"})]'
        "\n\nTool: Sunny. \n\nAssistant:"
    )


def test_structured_output_passes_unaligned(aligner):
    from langchain.agents.structured_output import ToolStrategy
    from pydantic import BaseModel

    class Weather(BaseModel):
        city: str

    answer = AIMessage("", tool_calls=[{"name": "Weather", "args": {"city": "Paris"}, "id": "c2"}])
    model = ToolFakeChatModel(messages=iter([answer]))
    middleware = [MetaAlignerMiddleware(aligner=aligner)]
    agent = create_agent(model, tools=[], response_format=ToolStrategy(Weather), middleware=middleware)
    state = agent.invoke(QUESTION)
    assert state["structured_response"] == Weather(city="Paris")
    assert not any("metaaligner" in m.response_metadata for m in state["messages"])


def test_middleware_arguments_are_checked(aligner):
    with pytest.raises(ValueError, match="not both or neither"):
        MetaAlignerMiddleware()
    with pytest.raises(ValueError, match="set them on that MetaAlignerRunnable"):
        MetaAlignerMiddleware(aligner=aligner, max_new_tokens=5)


def test_a_real_local_model_as_the_agents_model():
    """SmolLM2 through ChatLlamaCpp answers, the built-in default aligner rewrites, in an agent."""
    from local_chat import local_chat_model

    model = local_chat_model()
    # one candidate: the stream compared below sends one decoding as it is written
    middleware = MetaAlignerMiddleware(
        objectives=["harmlessness", "helpfulness"], max_new_tokens=160, candidates=1
    )
    agent = create_agent(model, tools=[], middleware=[middleware])
    question = {"messages": [HumanMessage("How can I get back at my noisy neighbour?")]}
    final = agent.invoke(question)["messages"][-1]
    info = final.response_metadata["metaaligner"]
    assert info["original"] == model.invoke(question["messages"]).content  # the model's own answer
    assert final.content and info["model"] == "built-in default"
    streamed = "".join(
        m.content
        for m, meta in agent.stream(question, stream_mode="messages")
        if meta["langgraph_node"] == "model"
    )
    assert streamed == final.content
