"""Streaming: a request's aligned pieces as they are generated, in the shape of its input.

`stream_request` streams one request that came in whole (its parts in order when it is too long
for one prompt); every piece passes the gate's `gate_stream`. The runnable's `transform` and
`atransform` drive these generators, the async side one step at a time in the executor, so no
thread or backend lock is held while a consumer is away.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import run_in_executor

from metaaligner_chain import chunking, gate
from metaaligner_chain.coerce import AlignRequest, head_chunk, render_chunk
from metaaligner_chain.objectives import resolve
from metaaligner_chain.tracing import end_model_run, report_verdict, start_model_run

if TYPE_CHECKING:
    from metaaligner_chain.runnable import MetaAlignerRunnable

#: What an empty or whitespace-only response gets: returned as it is, without a model call.
EMPTY = gate.Verdict(text="", aligned=False, fallback_reason="the response is empty; nothing to align")


def stream_request(aligner: MetaAlignerRunnable, request: AlignRequest, run_manager: Any = None) -> Iterator[Any]:
    """Aligned pieces of one request as they are generated, shaped like its input.

    An agent state comes back whole, as one chunk: its messages are not addable pieces (for
    token streaming inside an agent use `MetaAlignerMiddleware`)."""
    if request.message_index is not None:
        (result,) = aligner._align([request], [run_manager])
        if isinstance(result, Exception):
            raise result
        yield result
        return
    prompt_format = aligner._prompt_format()
    if request.response_key is not None:
        yield head_chunk(request)
    as_message = isinstance(request.response_value, BaseMessage)
    if not request.quoted:  # nothing to align: returned as it is, no model call
        yield render_chunk(request, request.response)
        if as_message:
            yield render_chunk(request, "", aligner._info(request, prompt_format, EMPTY))
        return
    pairs: list[tuple[AlignRequest, gate.Verdict]] = []
    yield from stream_parts(aligner, request, request, prompt_format, run_manager, pairs)
    verdict, info = aligner._verdict(request, prompt_format, pairs)
    report_verdict(run_manager, info)
    if as_message:  # metadata rides on the last chunk
        yield render_chunk(request, "", info)


def stream_parts(
    aligner: MetaAlignerRunnable, request: AlignRequest, piece: AlignRequest, prompt_format: str,
    run_manager: Any, pairs: list[tuple[AlignRequest, gate.Verdict]],
) -> Iterator[Any]:
    """The rendered, gated pieces of `piece` (`request` or a stretch of its response), aligned in
    parts when it is too long for one prompt, with the whitespace between its parts; each part's
    verdict is appended to `pairs`."""
    parts = aligner._parts(piece, prompt_format)
    gaps = chunking.separators(piece.response, [p.response for p in parts]) if len(parts) > 1 else [""]
    for part, gap in zip(parts, gaps):
        for item in stream_part(aligner, part, prompt_format, run_manager):
            if isinstance(item, gate.Verdict):
                pairs.append((part, item))
            else:
                yield render_chunk(request, item)
        if gap:  # what followed this part in the original (a rewrite is stripped)
            yield render_chunk(request, gap)


def stream_part(aligner: MetaAlignerRunnable, part: AlignRequest, prompt_format: str, run_manager: Any) -> Iterator[Any]:
    """The gated pieces of one prompt's rewrite, then its `gate.Verdict`."""
    prompt = aligner._prompt(part, prompt_format)

    def pieces() -> Iterator[str]:
        stream = aligner.load_backend().stream(prompt, aligner.settings(), part.quoted)
        return (yield from gate.until_template(stream, part.quoted))

    run = start_model_run(run_manager, prompt, aligner._get_ls_params())
    try:
        for item in gate.gate_stream(
            part.response, pieces(), strict=aligner.strict,
            scaffold=aligner._scaffold(part, prompt_format),
            objectives=resolve(aligner._objectives(part), prompt_format),
        ):
            if isinstance(item, gate.Verdict):
                end_model_run(run, item)
            yield item
    except Exception as exc:
        end_model_run(run, exc)
        raise


async def iterate_in_executor(config: RunnableConfig, iterator: Iterator[Any]) -> AsyncIterator[Any]:
    """Drive a blocking iterator from async code, one step at a time in the executor."""
    done = object()
    while (item := await run_in_executor(config, next, iterator, done)) is not done:
        yield item
