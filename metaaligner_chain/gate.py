"""The one place that decides what goes out: the aligned answer, or the policy's original and why.

A failure inside the aligner (a model that will not load, a prompt that does not fit, an empty
answer) never loses the policy's response: it is returned unchanged, the reason is logged and
recorded in the output's metadata. With `strict=True` the failure is raised instead.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterator
from dataclasses import dataclass

from metaaligner_chain.backends.base import Generation

logger = logging.getLogger("metaaligner_chain")


class AlignerError(RuntimeError):
    """The aligner could not produce an answer and `strict=True` asked for an error."""


@dataclass(frozen=True)
class Verdict:
    """What goes out: `text`, whether it is the aligner's output, and why not when it is not."""

    text: str
    aligned: bool
    fallback_reason: str | None = None
    finish_reason: str | None = None
    completion_tokens: int | None = None


def _fallback(original: str, reason: str, strict: bool, cause: BaseException | None = None) -> Verdict:
    if strict:
        raise AlignerError(reason) from cause
    logger.warning("MetaAligner kept the original response: %s", reason)
    return Verdict(text=original, aligned=False, fallback_reason=reason)


def decide(original: str, outcome: Generation | BaseException, *, strict: bool) -> Verdict:
    """Turn one generation (or the exception raised while making it) into a verdict."""
    if isinstance(outcome, BaseException):
        reason = f"aligner failed: {type(outcome).__name__}: {outcome}"
        return _fallback(original, reason, strict, outcome)
    text = outcome.text.strip()
    if not text:
        return _fallback(original, "aligner returned an empty answer", strict)
    return Verdict(
        text=text, aligned=True, finish_reason=outcome.finish_reason,
        completion_tokens=outcome.completion_tokens,
    )


def gate_stream(
    original: str, pieces: Generator[str, None, Generation | None], *, strict: bool
) -> Iterator[str | Verdict]:
    """Stream the aligned pieces exactly as `decide` would return them, then yield the `Verdict`.

    Leading and trailing whitespace is held back (as `decide` strips it). If the aligner fails
    before its first visible piece, or writes nothing, the original is streamed instead; a failure
    after text has gone out is raised, since what was sent cannot be taken back.
    """
    emitted, held, finished = [], "", None
    try:
        while True:
            try:
                piece = next(pieces)
            except StopIteration as stop:  # the backend returns its finished Generation
                finished = stop.value
                break
            if not emitted:
                piece = piece.lstrip()
                if not piece:
                    continue
            body = piece.rstrip()
            if body:
                emitted.append(held + body)
                yield held + body
                held = piece[len(body):]
            else:
                held += piece
    except Exception as exc:  # the aligner broke; the gate decides below
        if emitted:
            raise AlignerError(f"aligner failed mid-stream after {len(''.join(emitted))} characters: {exc}") from exc
        verdict = decide(original, exc, strict=strict)
    else:
        # the backend's own Generation when it returns one (finish reason, counts)
        verdict = decide(original, finished or Generation("".join(emitted), "", 0, 0), strict=strict)
    if not verdict.aligned:
        yield verdict.text
    yield verdict
