"""`aligner.wrap(chain)`: run a chain, then align its output with the chain's input as context.

The result takes what the chain takes and returns what the chain returns, aligned; it streams the
chain's output through the aligner as `chain | aligner` does (each completed paragraph aligned
while the chain is still writing), batches through both the chain's and the aligner's batch, and traces as one run.
An agent (its output a state ``{"messages": [...]}``) gets its last AI message aligned, with the
conversation before it as the context; its state comes back whole.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from langchain_core.prompts import BasePromptTemplate
from langchain_core.runnables import Runnable, RunnableConfig, RunnableSerializable
from langchain_core.runnables.config import patch_config
from pydantic import ConfigDict

from metaaligner_chain.coerce import QUERY_KEYS, is_agent_state


class AlignedChain(RunnableSerializable[Any, Any]):
    """`chain`, then `aligner` on (chain input as context, chain output as response)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    chain: Runnable
    aligner: Runnable
    context: Callable[[Any], Any] | None = None
    name: str | None = "MetaAlignedChain"

    def context_of(self, value: Any) -> Any:
        """What the aligner reads as context for chain input `value`."""
        if self.context is not None:
            return self.context(value)
        if not isinstance(value, dict):
            return value  # text, messages or a prompt value
        first = getattr(self.chain, "first", self.chain)
        if isinstance(first, BasePromptTemplate):
            return first.invoke(value)
        key = next((k for k in QUERY_KEYS if k in value), None)
        return value[key] if key else "\n".join(f"{k}: {v}" for k, v in value.items())

    def _request(self, value: Any, response: Any) -> dict[str, Any]:
        if is_agent_state(response):  # the agent's own conversation is the context
            return response
        return {"query": self.context_of(value), "response": response}

    @staticmethod
    def _answer(aligned: Any, response: Any) -> Any:
        """The aligned output in the chain's own output type."""
        return aligned if is_agent_state(response) else aligned["response"]

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        def run(value: Any, run_manager: Any, config: RunnableConfig) -> Any:
            child = patch_config(config, callbacks=run_manager.get_child())
            response = self.chain.invoke(value, child)
            return self._answer(self.aligner.invoke(self._request(value, response), child), response)

        return self._call_with_config(run, input, config, **kwargs)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        async def run(value: Any, run_manager: Any, config: RunnableConfig) -> Any:
            child = patch_config(config, callbacks=run_manager.get_child())
            response = await self.chain.ainvoke(value, child)
            return self._answer(await self.aligner.ainvoke(self._request(value, response), child), response)

        return await self._acall_with_config(run, input, config, **kwargs)

    def batch(self, inputs: list[Any], config: Any = None, *, return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        if not inputs:
            return []

        def run(values: list[Any], run_manager: list[Any], config: list[RunnableConfig]) -> list[Any]:
            children = [patch_config(c, callbacks=m.get_child()) for c, m in zip(config, run_manager)]
            responses = self.chain.batch(values, children, return_exceptions=True)
            return self._align_batch(values, responses, children)

        return self._batch_with_config(run, inputs, config, return_exceptions=return_exceptions, **kwargs)

    def _align_batch(self, values: list[Any], responses: list[Any], children: list[RunnableConfig]) -> list[Any]:
        ok = [i for i, r in enumerate(responses) if not isinstance(r, Exception)]
        aligned = self.aligner.batch(
            [self._request(values[i], responses[i]) for i in ok], [children[i] for i in ok],
            return_exceptions=True,
        )
        results = list(responses)
        for i, out in zip(ok, aligned):
            results[i] = out if isinstance(out, Exception) else self._answer(out, responses[i])
        return results

    def _requests(self, value: Any, chunks: Iterator[Any]) -> Iterator[Any]:
        """The chain's output chunks as the aligner's input stream: the context with the first
        response chunk, then the response chunks (an agent's whole states as they are)."""
        first = True
        for chunk in chunks:
            yield self._request_chunk(value, chunk, first)
            first = False

    async def _arequests(self, value: Any, chunks: AsyncIterator[Any]) -> AsyncIterator[Any]:
        first = True
        async for chunk in chunks:
            yield self._request_chunk(value, chunk, first)
            first = False

    def _request_chunk(self, value: Any, chunk: Any, first: bool) -> Any:
        """One chain output chunk as an aligner input chunk: the context rides on the first."""
        if is_agent_state(chunk):
            return chunk
        return {"query": self.context_of(value), "response": chunk} if first else {"response": chunk}

    @staticmethod
    def _aligned_piece(chunk: Any) -> Any:
        """What the aligner's output chunk is in the chain's output type; None for the context."""
        return chunk if is_agent_state(chunk) else chunk.get("response")

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        """The chain's output streams into the aligner (stream-through: paragraphs aligned while
        the chain is still writing), the chain's input as context."""
        def run(values: Iterator[Any], run_manager: Any, config: RunnableConfig) -> Iterator[Any]:
            (value,) = list(values)
            child = patch_config(config, callbacks=run_manager.get_child())
            whole = _streams_updates(self.chain)
            chunks = iter([self.chain.invoke(value, child)]) if whole else self.chain.stream(value, child)
            requests = self._requests(value, chunks)
            for chunk in self.aligner.transform(requests, child):
                if (piece := self._aligned_piece(chunk)) is not None:
                    yield piece

        yield from self._transform_stream_with_config(iter([input]), run, config, **kwargs)

    async def astream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AsyncIterator[Any]:
        async def single() -> AsyncIterator[Any]:
            yield input

        async def run(values: AsyncIterator[Any], run_manager: Any, config: RunnableConfig) -> AsyncIterator[Any]:
            (value,) = [v async for v in values]
            child = patch_config(config, callbacks=run_manager.get_child())
            if _streams_updates(self.chain):
                state = await self.chain.ainvoke(value, child)

                async def whole() -> AsyncIterator[Any]:
                    yield state

                chunks = whole()
            else:
                chunks = self.chain.astream(value, child)
            requests = self._arequests(value, chunks)
            async for chunk in self.aligner.atransform(requests, child):
                if (piece := self._aligned_piece(chunk)) is not None:
                    yield piece

        async for chunk in self._atransform_stream_with_config(single(), run, config, **kwargs):
            yield chunk


def _streams_updates(chain: Any) -> bool:
    """Whether `chain` is a graph (a LangGraph agent) whose stream is its state updates, node by
    node, rather than its output in pieces: its final state is then aligned whole."""
    return getattr(chain, "stream_mode", None) is not None
