"""`MetaAlignerMiddleware`: align an agent's final answers inside `langchain.agents.create_agent`.

It wraps each model call (`wrap_model_call`): the agent's model answers through an
`AlignedChatModel`, so an answer that calls tools goes on untouched and a final answer is
rewritten with the conversation so far as context, before the agent records it. Because the
rewrite *is* the model call's output, every stream mode shows only the aligned answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NotRequired

try:
    from langchain.agents.middleware import AgentMiddleware, AgentState, ModelRequest, ModelResponse
except ImportError as err:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "MetaAlignerMiddleware needs langchain >= 1.0 (agents): "
        'pip install "metaaligner-chain[agents]"'
    ) from err

from metaaligner_chain.chat_model import AlignedChatModel
from metaaligner_chain.objectives import Objective
from metaaligner_chain.runnable import MetaAlignerRunnable


class AlignerState(AgentState):
    """The agent's state, plus optional per-run `objectives` (else the middleware's own)."""

    objectives: NotRequired[list[str]]


class MetaAlignerMiddleware(AgentMiddleware):
    """Rewrite an agent's final answers toward objectives with a MetaAligner.

    Setup:
        ``pip install "metaaligner-chain[agents,gguf]"``

    Instantiate:
        .. code-block:: python

            from langchain.agents import create_agent
            from metaaligner_chain.middleware import MetaAlignerMiddleware

            agent = create_agent(
                model, tools=[get_weather],
                middleware=[MetaAlignerMiddleware(objectives=["harmlessness", "helpfulness"])],
            )

    Invoke:
        .. code-block:: python

            state = agent.invoke({"messages": [("user", "What's the weather in Paris?")]})
            final = state["messages"][-1]                         # the aligned answer
            final.response_metadata["metaaligner"]["original"]    # the model's own answer
            agent.invoke({"messages": [...], "objectives": ["humour"]})  # per-run objectives

    Stream:
        ``agent.stream(..., stream_mode="messages")`` yields the aligned answer's tokens (the
        model's own tokens for a final answer are not streamed); a tool-calling turn streams as
        one chunk. ``"updates"`` and ``"values"`` show the aligned message once it is done.

    Async:
        ``await agent.ainvoke(...)`` and ``agent.astream(...)`` behave the same.

    Structured output: with a ``response_format`` the agent's answer is data, not prose; model
    calls then go through unaligned.
    """

    state_schema = AlignerState

    def __init__(
        self,
        objectives: list[str | Objective] | None = None,
        *,
        aligner: MetaAlignerRunnable | None = None,
        **aligner_options: Any,
    ) -> None:
        """Give `objectives` (and any `MetaAlignerRunnable` option: ``model``, ``max_new_tokens``,
        ...) or a ready `aligner`."""
        super().__init__()
        if (aligner is None) == (objectives is None):
            raise ValueError(
                "MetaAlignerMiddleware takes `objectives` (e.g. ['harmlessness', 'helpfulness']) "
                "or a ready `aligner=MetaAlignerRunnable(...)`, not both or neither."
            )
        if aligner is not None and aligner_options:
            raise ValueError(
                f"options {sorted(aligner_options)} apply to a new aligner; with `aligner=` set "
                "them on that MetaAlignerRunnable instead."
            )
        self.aligner = aligner or MetaAlignerRunnable(objectives=objectives, **aligner_options)
        self.tools = []

    def _request(self, request: ModelRequest) -> ModelRequest:
        if request.response_format is not None:  # structured output: left to the model
            return request
        model = AlignedChatModel(chat_model=request.model, aligner=self.aligner)
        objectives = request.state.get("objectives")
        if objectives is None:
            return request.override(model=model)
        return request.override(
            model=model, model_settings={**request.model_settings, "objectives": objectives}
        )

    def wrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]
    ) -> ModelResponse:
        return handler(self._request(request))

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[ModelResponse]]
    ) -> ModelResponse:
        return await handler(self._request(request))
