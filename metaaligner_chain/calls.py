"""Model calls written once and made with `invoke` or `ainvoke`: a generator yields each `Call`
and is sent its result; `make` runs it synchronously, `amake` asynchronously.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, NamedTuple, TypeVar

from langchain_core.runnables import Runnable, RunnableConfig

T = TypeVar("T")


class Call(NamedTuple):
    """One model call of a turn: `runnable.invoke(input, config, **kwargs)`, or `ainvoke`."""

    runnable: Runnable
    input: Any
    config: RunnableConfig
    kwargs: dict[str, Any]

    def invoke(self) -> Any:
        return self.runnable.invoke(self.input, self.config, **self.kwargs)

    async def ainvoke(self) -> Any:
        return await self.runnable.ainvoke(self.input, self.config, **self.kwargs)


class Done(NamedTuple):
    """What the calls' generator returned."""

    value: Any


def _step(calls: Generator[Call, Any, Any], result: Any) -> Call | Done:
    """The next call `calls` asks for, sent the previous call's result; `Done` once it returns."""
    try:
        return calls.send(result)
    except StopIteration as done:
        return Done(done.value)


def make(calls: Generator[Call, Any, T]) -> T:
    """Make each call `calls` asks for with `invoke`; what `calls` returns."""
    step = _step(calls, None)
    while isinstance(step, Call):
        step = _step(calls, step.invoke())
    return step.value


async def amake(calls: Generator[Call, Any, T]) -> T:
    """`make` with `ainvoke`."""
    step = _step(calls, None)
    while isinstance(step, Call):
        step = _step(calls, await step.ainvoke())
    return step.value
