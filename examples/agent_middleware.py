"""MetaAlignerMiddleware: an agent's final answers aligned inside `create_agent`; tool calls pass.

Part 1 scripts a tool-calling model (the offline 135M model does not call tools reliably) to show
that only the final answer is rewritten. Part 2 puts the real local model (SmolLM2-135M-Instruct
through ChatLlamaCpp) in the agent and streams with stream_mode="messages": what streams is the
aligned answer. Run: `.venv/bin/python examples/agent_middleware.py` (offline).
"""

from __future__ import annotations

from langchain.agents import create_agent
from langchain_community.chat_models import ChatLlamaCpp
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.tools import tool

from metaaligner_chain.middleware import MetaAlignerMiddleware
from metaaligner_chain.models.defaults import default_gguf_path


@tool
def get_weather(city: str) -> str:
    """Today's weather in a city."""
    return f"Rain all day in {city}."


class ScriptedToolModel(GenericFakeChatModel):
    def bind_tools(self, tools, **kwargs):
        return self


def main() -> None:
    aligner = MetaAlignerMiddleware(objectives=["harmlessness", "helpfulness"], max_new_tokens=96)

    call = {"name": "get_weather", "args": {"city": "Oslo"}, "id": "call-1"}
    script = iter([
        AIMessage("", tool_calls=[call]),
        AIMessage("Rain. Obviously. Stay inside if you can't handle a bit of water, genius."),
    ])
    model = ScriptedToolModel(messages=script)
    agent = create_agent(model, tools=[get_weather], middleware=[aligner])
    state = agent.invoke({"messages": [("user", "Should I bike to work in Oslo today?")]})
    for message in state["messages"]:
        note = message.response_metadata.get("metaaligner", {}).get("original")
        print(f"{message.type:>5}: {message.content or message.tool_calls}")
        if note:
            print(f"       (the model wrote: {note})")

    policy = ChatLlamaCpp(
        model_path=str(default_gguf_path()),
        temperature=0.0,
        max_tokens=64,
        n_ctx=2048,
        rope_freq_base=0,  # keep the GGUF's own RoPE base
        verbose=False,
    )
    agent = create_agent(policy, tools=[], middleware=[aligner])
    print("\nstreamed:", end=" ")
    question = {"messages": [("user", "How can I get back at my noisy neighbour?")]}
    for token, meta in agent.stream(question, stream_mode="messages"):
        if meta["langgraph_node"] == "model":
            print(token.content, end="", flush=True)
    print()


if __name__ == "__main__":
    main()
