"""AlignedChatModel on a fake inner chat model and the tiny llama aligner: what it aligns, what it
leaves alone, streaming, usage, stop sequences, tools and structured output."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from pydantic import BaseModel

from fake_chat import ToolFakeChatModel
from metaaligner_chain import AlignedChatModel, MetaAlignerRunnable

ANSWER = "Mix flour, water and yeast, then bake it."
USAGE = {"input_tokens": 9, "output_tokens": 11, "total_tokens": 20}
CONVERSATION = [SystemMessage("Be brief."), HumanMessage("How do I bake bread?")]


@pytest.fixture(scope="module")
def aligner(tiny_model_dir):
    return MetaAlignerRunnable(
        objectives=["harmlessness"],
        model=str(tiny_model_dir),
        prompt_format="hh-rlhf",
        max_new_tokens=12,
    )


def _model(aligner, *answers, **kwargs):
    answers = answers or (AIMessage(ANSWER, usage_metadata=USAGE),) * 4
    return AlignedChatModel(
        chat_model=ToolFakeChatModel(messages=iter(answers)), aligner=aligner, **kwargs
    )


def _expected(aligner):
    return aligner.invoke({"query": CONVERSATION, "response": AIMessage(ANSWER)})[
        "response"
    ].content


def test_the_answer_is_aligned_with_the_conversation_as_context(aligner):
    out = _model(aligner).invoke(CONVERSATION)
    expected = aligner.invoke({"query": CONVERSATION, "response": AIMessage(ANSWER)})["response"]
    info, same = out.response_metadata["metaaligner"], expected.response_metadata["metaaligner"]
    assert out.content == expected.content and info["original"] == ANSWER
    # what the aligner wrote with the conversation as context: the answer, or the rewrite the gate
    # turned down (the tiny model writes until max_new_tokens)
    written = out.content if info["aligned"] else info["rejected"]
    assert written == (expected.content if same["aligned"] else same["rejected"]) != ANSWER
    assert out.usage_metadata == USAGE  # the inner model's usage
    assert out.response_metadata["metaaligner"]["usage"]["output_tokens"] > 0  # the aligner's


def test_objectives_per_call(aligner):
    out = _model(aligner).invoke(CONVERSATION, objectives=["humour"])
    assert out.response_metadata["metaaligner"]["objectives"] == ["humour"]


def test_an_answer_that_calls_tools_is_left_alone(aligner):
    call = AIMessage(
        "", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "c1"}]
    )
    model = _model(aligner, call, call)
    bound = model.bind_tools(
        [{"name": "get_weather", "description": "w", "parameters": {}}], tool_choice="any"
    )
    out = bound.invoke("Weather?")
    assert out.tool_calls == call.tool_calls and "metaaligner" not in out.response_metadata
    streamed = None
    for chunk in bound.stream("Weather?"):
        streamed = chunk if streamed is None else streamed + chunk
    assert streamed.tool_calls == call.tool_calls


def test_stream_yields_the_aligned_answer_and_a_last_chunk_with_usage(aligner):
    chunks = list(_model(aligner).stream(CONVERSATION))
    assert "".join(c.content for c in chunks) == _expected(aligner)
    assert chunks[-1].chunk_position == "last" and chunks[-1].usage_metadata == USAGE
    assert all(c.usage_metadata is None for c in chunks[:-1])
    assert chunks[-1].response_metadata["metaaligner"]["original"] == ANSWER


async def test_async_matches_sync(aligner):
    assert (await _model(aligner).ainvoke(CONVERSATION)).content == _expected(aligner)
    assert "".join([c.content async for c in _model(aligner).astream(CONVERSATION)]) == _expected(
        aligner
    )


def test_the_aligned_answer_ends_before_a_stop_sequence(aligner):
    full = _expected(aligner)
    stop = full[len(full) // 2 :][:3]
    cut = full[: full.index(stop)]
    assert _model(aligner).invoke(CONVERSATION, stop=[stop]).content == cut
    assert "".join(c.content for c in _model(aligner, stop=[stop]).stream(CONVERSATION)) == cut


def test_structured_output_is_the_inner_models_unaligned(aligner):
    class Person(BaseModel):
        name: str

    call = AIMessage("", tool_calls=[{"name": "Person", "args": {"name": "Ada"}, "id": "c1"}])
    assert _model(aligner, call).with_structured_output(Person).invoke("Who?") == Person(name="Ada")


def test_settings_apply_to_the_aligner_and_strays_are_named(aligner):
    model = _model(aligner, max_tokens=3, temperature=0.0)
    assert model._get_ls_params()["ls_max_tokens"] == 3
    assert model.invoke(CONVERSATION).response_metadata["metaaligner"]["completion_tokens"] <= 3
    with pytest.warns(UserWarning, match="ignores `timeout`: set it on the inner chat model"):
        _model(aligner, timeout=5)
