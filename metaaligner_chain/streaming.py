"""Streaming: a request's aligned pieces as they are generated, in the shape of its input.

`stream_request` streams one request that came in whole (its parts in order when it is too long
for one prompt); `stream_through` aligns a response that is still streaming in, one completed
paragraph at a time, so the first aligned tokens go out before the policy has finished. Every
piece passes the gate's `gate_stream`. The runnable's `transform` and `atransform` drive these
generators (`drive`, `adrive`), the async side one step at a time in the executor, so no thread or
backend lock is held while a consumer is away.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import run_in_executor
from langchain_core.runnables.utils import AddableDict

from metaaligner_chain import batching, chunking, gate
from metaaligner_chain.coerce import (
    RESPONSE_KEYS,
    AlignRequest,
    coerce,
    join_chunks,
)
from metaaligner_chain.objectives import resolve
from metaaligner_chain.render import head_chunk, render_chunk
from metaaligner_chain.tracing import end_model_run, report_verdict, start_model_run

if TYPE_CHECKING:
    from metaaligner_chain.runnable import MetaAlignerRunnable

def align_stream(aligner: MetaAlignerRunnable, chunks: Iterator[Any], run_manager: Any = None) -> Iterator[Any]:
    """The runnable's `transform`: stream-through when it is on, else the whole input at its end."""
    if aligner.stream_through:
        yield from drive(stream_through(aligner, run_manager), chunks)
    else:
        yield from stream_request(aligner, coerce(join_chunks(list(chunks))), run_manager)


async def aalign_stream(
    aligner: MetaAlignerRunnable, chunks: AsyncIterator[Any], run_manager: Any, config: RunnableConfig
) -> AsyncIterator[Any]:
    """`align_stream` for `atransform`: the aligner's steps in the executor, the upstream on the loop."""
    if aligner.stream_through:
        items = adrive(stream_through(aligner, run_manager), chunks, config)
    else:
        request = coerce(join_chunks([chunk async for chunk in chunks]))
        items = iterate_in_executor(config, stream_request(aligner, request, run_manager))
    async for item in items:
        yield item


def stream_request(aligner: MetaAlignerRunnable, request: AlignRequest, run_manager: Any = None) -> Iterator[Any]:
    """Aligned pieces of one request as they are generated, shaped like its input.

    An agent state comes back whole, as one chunk: its messages are not addable pieces (for
    token streaming inside an agent use `MetaAlignerMiddleware`)."""
    if request.message_index is not None:
        (result,) = batching.align(aligner, [request], [run_manager])
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
            yield render_chunk(request, "", aligner._info(request, prompt_format, gate.EMPTY))
        return
    pairs: list[tuple[AlignRequest, gate.Verdict]] = []
    yield from stream_parts(aligner, request, request, prompt_format, run_manager, pairs)
    verdict, info = chunking.verdict(aligner, request, prompt_format, pairs)
    report_verdict(run_manager, info)
    if as_message:  # metadata rides on the last chunk
        yield render_chunk(request, "", info)


def stream_parts(
    aligner: MetaAlignerRunnable, request: AlignRequest, piece: AlignRequest, prompt_format: str,
    run_manager: Any, pairs: list[tuple[AlignRequest, gate.Verdict]],
) -> Iterator[Any]:
    """The rendered, gated pieces of `piece` (`request` or a stretch of its response), aligned in
    parts when it is too long for one prompt, with the whitespace between its parts; each part's
    verdict is appended to `pairs`, and each part after one in `pairs` has that one's last
    sentence as aligned in its context, as `batching.align` does."""
    parts = chunking.parts(aligner, piece, prompt_format)
    gaps = chunking.separators(piece.response, [p.response for p in parts]) if len(parts) > 1 else [""]
    for part, gap in zip(parts, gaps):
        part = chunking.after(part, pairs)  # the part before, as aligned (or kept), ends its context
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


#: A `stream_through` core yields `NEXT` to ask its driver for the next upstream chunk; the driver
#: sends `END` when the upstream is exhausted.
NEXT, END = object(), object()
#: The fewest tokens a stretch of paragraphs needs to be aligned on its own while the response is
#: still streaming in; a shorter one (a heading, a one-line paragraph) waits for the next paragraph.
THROUGH_MIN_TOKENS = chunking.MIN_PART
#: A paragraph break, as `chunking` splits long answers.
_PARAGRAPH: re.Pattern[str] = chunking.BREAKS[0]


def stream_through(aligner: MetaAlignerRunnable, run_manager: Any = None) -> Generator[Any, Any, None]:
    """Align a response while it is still streaming in, one completed paragraph at a time.

    A coroutine run by `drive`/`adrive`: it yields `NEXT` for each upstream chunk (str, message
    chunks, or dicts holding them under a response key, as `coerce` reads them) and yields output
    chunks in between. Once the response holds a paragraph break followed by more text, and a
    later chunk has arrived, the text before the break (at least `THROUGH_MIN_TOKENS` tokens) is
    aligned with the context known by then (and the last sentence of the stretch before, as
    aligned) and streamed, then the break itself. When the upstream
    ends, the rest is aligned; the metadata reports the stretches as parts (`chunks`), as for a
    long answer, and each part the gate turns down keeps its original text. An input that never
    had such a break before its last chunk (a whole input passed to `stream`, an agent state) is
    aligned whole, exactly as `stream_request` does.
    """
    chunks: list[Any] = []
    total: Any = None
    request: AlignRequest | None = None  # set once the first stretch goes out
    prompt_format, start = "", 0
    pairs: list[tuple[AlignRequest, gate.Verdict]] = []
    count = _token_counter(aligner)
    while (chunk := (yield NEXT)) is not END:
        cut = None if total is None else _paragraph_cut(_text_of(total), start, count)
        current = _alignable(total) if cut else None
        if cut and current:  # the break is complete, and more text came after the chunk holding it
            if request is None:
                prompt_format = aligner._prompt_format()
                if current.response_key is not None:
                    yield AddableDict({k: v for k, v in current.raw.items() if k != current.response_key})
            request = current
            stretch = replace(request, response=request.response[start : cut[0]].strip())
            yield from stream_parts(aligner, request, stretch, prompt_format, run_manager, pairs)
            yield render_chunk(request, request.response[cut[0] : cut[1]])
            start = cut[1]
        chunks.append(chunk)
        total = chunk if total is None else join_chunks([total, chunk])
        if request is not None and request.response_key is not None and isinstance(chunk, dict):
            rest = {k: v for k, v in chunk.items() if k != request.response_key}
            if rest:  # the head went out already: other keys follow as they come
                yield AddableDict(rest)
    if request is None:
        yield from stream_request(aligner, coerce(join_chunks(chunks)), run_manager)
        return
    request = coerce(total)
    rest = request.response[start:]
    if rest.strip():
        yield from stream_parts(aligner, request, replace(request, response=rest.strip()), prompt_format,
                                run_manager, pairs)
        if trailing := rest[len(rest.rstrip()):]:
            yield render_chunk(request, trailing)
    verdict, info = chunking.verdict(aligner, request, prompt_format, pairs)
    if "chunks" in info:
        info["chunks"] = {**info["chunks"], "streamed_through": True}
    report_verdict(run_manager, info)
    if isinstance(request.response_value, BaseMessage):  # metadata rides on the last chunk
        yield render_chunk(request, "", info)
    if request.response_key is not None:
        yield AddableDict({"original_response": request.response_value})


def _text_of(total: Any) -> str:
    """The response text of the upstream chunks added up so far ("" while there is none)."""
    if isinstance(total, dict):
        key = next((k for k in RESPONSE_KEYS if k in total), None)
        total = total[key] if key else None
    if isinstance(total, BaseMessage):
        return total.text
    return total if isinstance(total, str) else ""


def _alignable(total: Any) -> AlignRequest | None:
    """The request the chunks so far make, when it can be aligned while streaming: a response
    with text (not an agent state, which is aligned whole, nor an input `coerce` refuses)."""
    try:
        request = coerce(total)
    except (TypeError, ValueError):  # not an input yet (or never): the end of the stream decides
        return None
    return request if request.message_index is None and request.quoted else None


def _paragraph_cut(text: str, start: int, count: Callable[[str], int]) -> tuple[int, int] | None:
    """(where the stretch ends, where the text after it begins) at the last paragraph break after
    `start` that more text follows, when the stretch before it holds `THROUGH_MIN_TOKENS` tokens."""
    last = None
    for match in _PARAGRAPH.finditer(text, start):
        if match.start() > start and match.end() < len(text):
            last = match
    if last is None or count(text[start : last.start()]) < THROUGH_MIN_TOKENS:
        return None
    return last.start(), last.end()


def _token_counter(aligner: MetaAlignerRunnable) -> Callable[[str], int]:
    """Tokens of a text by the aligner's own tokenizer, loaded at the first paragraph break; about
    four characters a token for an engine that cannot count (a server)."""
    counter: list[Callable[[str], int]] = []

    def count(text: str) -> int:
        if not counter:
            counter.append(getattr(aligner.load_backend(), "count_tokens", None) or (lambda t: len(t) // 4))
        return counter[0](text)

    return count


#: What `_send` returns when the core has finished.
_DONE = object()


def _send(core: Generator[Any, Any, None], value: Any) -> Any:
    """The core's next yield after sending it `value`; `_DONE` when it has finished (a
    StopIteration cannot cross an executor's future)."""
    try:
        return core.send(value)
    except StopIteration:
        return _DONE


def drive(core: Generator[Any, Any, None], chunks: Iterator[Any]) -> Iterator[Any]:
    """Run a `stream_through` core on a sync upstream: its output chunks, the upstream pulled
    only when the core asks for more."""
    try:
        item = _send(core, None)
        while item is not _DONE:
            if item is NEXT:
                item = _send(core, next(chunks, END))
            else:
                yield item
                item = _send(core, None)
    finally:
        core.close()


async def adrive(
    core: Generator[Any, Any, None], chunks: AsyncIterator[Any], config: RunnableConfig
) -> AsyncIterator[Any]:
    """`drive` for an async upstream: the core steps in the executor, the upstream on the loop."""
    item = await run_in_executor(config, _send, core, None)
    while item is not _DONE:
        if item is NEXT:
            item = await run_in_executor(config, _send, core, await anext(chunks, END))
        else:
            yield item
            item = await run_in_executor(config, _send, core, None)


async def iterate_in_executor(config: RunnableConfig, iterator: Iterator[Any]) -> AsyncIterator[Any]:
    """Drive a blocking iterator from async code, one step at a time in the executor."""
    done = object()
    while (item := await run_in_executor(config, next, iterator, done)) is not done:
        yield item
