"""Long answers aligned in parts, long conversations trimmed to fit.

An answer whose prompt would leave the aligner no room to write its rewrite is split where the
text breaks (paragraphs, then sentences, then words), each part is aligned with the query and the
last sentence of the part before as aligned (`last_sentence`) as context, and the parts are joined
back with the original's own separators. Nothing is cut: a part
whose rewrite the gate turns down keeps its original text, and the metadata lists those parts.
A conversation given as context that leaves too little room is trimmed from its oldest turns,
never the latest question (`trim_turns`). `parts` and `verdict` apply these to one request of a
runnable: the parts it is aligned in, and the one verdict its parts' verdicts make.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from langchain_core.messages import BaseMessage, trim_messages

from metaaligner_chain.coerce import AlignRequest, as_messages, clean_text
from metaaligner_chain.gate import Verdict

if TYPE_CHECKING:
    from metaaligner_chain.runnable import MetaAlignerRunnable

#: Where text breaks, from the coarsest: a blank line, the end of a sentence, any whitespace.
BREAKS = (re.compile(r"\n[ \t]*\n\s*"), re.compile(r"(?<=[.!?\u2026])\s+"), re.compile(r"\s+"))


def _pieces(text: str, pattern: re.Pattern[str]) -> list[str]:
    """`text` split after each match of `pattern`, the separator kept with the piece before it."""
    pieces, start = [], 0
    for match in pattern.finditer(text):
        if match.end() > start and match.start() > start:
            pieces.append(text[start : match.end()])
            start = match.end()
    if start < len(text):
        pieces.append(text[start:])
    return pieces


def _units(text: str, limit: int, count: Callable[[str], int], level: int = 0) -> list[tuple[str, int]]:
    """`text` as (piece, tokens) units of at most `limit` tokens, broken as coarsely as possible."""
    size = count(text)
    if size <= limit:
        return [(text, size)]
    if level == len(BREAKS):  # one "word" longer than a part: cut it by characters
        step = max(1, len(text) * limit // size)
        return [(text[i : i + step], count(text[i : i + step])) for i in range(0, len(text), step)]
    pieces = _pieces(text, BREAKS[level])
    if len(pieces) == 1:
        return _units(text, limit, count, level + 1)
    return [unit for piece in pieces for unit in _units(piece, limit, count, level + 1)]


def split_text(text: str, limit: int, count: Callable[[str], int]) -> list[str]:
    """Consecutive parts of `text` of at most about `limit` tokens each (by `count`), split at
    paragraph breaks where possible, then sentences, then words; ``"".join(parts) == text``."""
    if limit < 1:
        raise ValueError(f"a part must hold at least one token; got limit={limit}.")
    parts, current, used = [], "", 0
    for unit, size in _units(text, limit, count):
        if current and used + size > limit:
            parts.append(current)
            current, used = "", 0
        current += unit
        used += size
    if current:
        parts.append(current)
    return parts


def separators(original: str, bodies: list[str]) -> list[str]:
    """The whitespace that follows each of `bodies` (consecutive stripped parts) in `original`."""
    out, pos = [], 0
    for body in bodies:
        pos = original.index(body, pos) + len(body)
        end = pos
        while end < len(original) and original[end].isspace():
            end += 1
        out.append(original[pos:end])
        pos = end
    return out


def join_parts(original: str, bodies: list[str], texts: list[str]) -> str:
    """The parts' texts (rewrites, or a part's own text where it fell back) joined with the
    separators their parts were followed by in `original`."""
    return "".join(t.strip() + sep for t, sep in zip(texts, separators(original, bodies)))


#: Fewest tokens a part may hold: when the context leaves less room than this, the answer is not
#: split (its prompt is too long whatever is done to the answer; the gate keeps the original).
MIN_PART = 32


#: Most words of the part before that a part's context carries (`last_sentence`), and the tokens
#: a split answer's parts leave free for them in their prompts.
PREVIOUS_WORDS = 30
PREVIOUS_ROOM = 64


def last_sentence(text: str) -> str:
    """The last sentence of `text` (its last `PREVIOUS_WORDS` words when it is longer)."""
    pieces = _pieces(text.strip(), BREAKS[1])
    words = (pieces[-1] if pieces else "").split()
    return " ".join(words[-PREVIOUS_WORDS:])


def after(part: AlignRequest, pairs: list[tuple[AlignRequest, Verdict]]) -> AlignRequest:
    """`part` with the last sentence of the part before it (the last of `pairs`, as aligned or
    kept) as the end of its context; `part` itself when it is the first."""
    return replace(part, previous=last_sentence(pairs[-1][1].text)) if pairs else part


def plan(answer: str, prompt_of: Callable[[str], str], count: Callable[[str], int], window: int) -> list[str]:
    """The parts `answer` is aligned in: ``[answer]`` when its prompt leaves the aligner room to
    write a rewrite as long as the answer, else parts that each leave that room and
    `PREVIOUS_ROOM` tokens for the end of the part before.

    `prompt_of(text)` is the aligner prompt with `text` as the answer; `count` counts tokens and
    `window` is what a prompt and its answer may take together (0: unknown, the answer whole).
    """
    if not window:
        return [answer]
    base = window - count(prompt_of(""))
    if base // 2 < MIN_PART or count(answer) <= base // 2:  # the answer in the prompt, and its rewrite
        return [answer]
    room = (base - PREVIOUS_ROOM) // 2
    return split_text(answer, room, count) if room >= MIN_PART else [answer]


def combine(original: str, bodies: list[str], verdicts: list[Verdict]) -> tuple[Verdict, dict[str, Any]]:
    """One verdict for `original` aligned in parts (`bodies`, one verdict each), and the metadata
    that describes them: how many parts, and which kept their original text and why."""
    fell_back = [{"part": k, "reason": v.fallback_reason} for k, v in enumerate(verdicts) if not v.aligned]
    aligned = len(fell_back) < len(verdicts)
    reason = None
    if fell_back:
        reason = f"{len(fell_back)} of {len(bodies)} parts kept their original text"
        if not aligned:
            reason += f" ({fell_back[0]['reason']})"
    verdict = Verdict(
        text=join_parts(original, bodies, [v.text for v in verdicts]), aligned=aligned,
        fallback_reason=reason, finish_reason=verdicts[-1].finish_reason,
        completion_tokens=sum(v.completion_tokens or 0 for v in verdicts) or None,
        prompt_tokens=sum(v.prompt_tokens or 0 for v in verdicts) or None,
    )
    return verdict, {"chunks": {"parts": len(bodies), "fell_back": fell_back}}


#: The room a conversation must leave for the answer and its rewrite: the whole answer, or parts
#: of at least this many tokens when the answer is longer. Older turns are dropped until it does.
CONTEXT_ROOM = 4 * MIN_PART


def trim_turns(
    messages: Sequence[BaseMessage], size: Callable[[list[BaseMessage]], int], budget: int
) -> list[BaseMessage]:
    """`messages` without their oldest turns, so that `size` (the prompt's tokens with them as the
    context) is at most `budget`: system messages stay, the kept turns start on a human one
    (langchain's `trim_messages`), and the latest human message and all after it are kept even
    when they alone are over the budget."""
    messages = list(messages)
    if size(messages) <= budget:
        return messages
    latest = max((i for i, m in enumerate(messages) if m.type == "human"), default=len(messages) - 1)
    kept = trim_messages(messages, max_tokens=budget, token_counter=size, strategy="last",
                         include_system=True, start_on="human")
    tail = messages[latest:]
    if len(kept) < len(tail) or kept[len(kept) - len(tail):] != tail:  # the latest question stays
        kept = [m for m in messages[:latest] if m.type == "system"] + tail
    return kept


def parts(aligner: MetaAlignerRunnable, request: AlignRequest, prompt_format: str) -> list[AlignRequest]:
    """`request`, or its parts when its answer is too long for one prompt with room for the
    rewrite (`plan`), its conversation first trimmed to fit (`fit_context`)."""
    if not request.quoted:
        return [request]
    backend = aligner.load_backend()
    count = getattr(backend, "count_tokens", None)
    if count is None:  # an engine that cannot count (a server): the answer goes whole
        return [request]
    window = getattr(backend, "window", backend.context_length)

    def counted(text: str) -> int:
        return count(clean_text(text))

    request = fit_context(aligner, request, prompt_format, counted, window)
    pieces = plan(
        request.response, lambda text: aligner._prompt(replace(request, response=text), prompt_format),
        counted, window,
    )
    if len(pieces) == 1:
        return [request]
    return [replace(request, response=body) for piece in pieces if (body := piece.rstrip())]


def fit_context(
    aligner: MetaAlignerRunnable, request: AlignRequest, prompt_format: str, count: Callable[[str], int],
    window: int,
) -> AlignRequest:
    """`request` with its conversation trimmed from the oldest turns (`trim_turns`) when it leaves
    less room than the answer, or `CONTEXT_ROOM` tokens, for the answer and its rewrite; the
    latest question is always kept."""
    if not window or isinstance(request.context, str):
        return request
    messages = as_messages(request.context)
    if len(messages) < 2:
        return request
    need = min(count(request.quoted), CONTEXT_ROOM)

    def size(kept: list[BaseMessage]) -> int:
        return count(aligner._prompt(replace(request, context=kept, response=""), prompt_format))

    kept = trim_turns(messages, size, window - 2 * need)
    if len(kept) == len(messages):
        return request
    return replace(request, context=kept, dropped_turns=len(messages) - len(kept))


def verdict(
    aligner: MetaAlignerRunnable, request: AlignRequest, prompt_format: str,
    pairs: list[tuple[AlignRequest, Verdict]],
) -> tuple[Verdict, dict[str, Any]]:
    """One verdict and its metadata for `request`, from the (part, verdict) pairs of its parts."""
    if len(pairs) == 1:
        found, extra = pairs[0][1], {}
    else:
        found, extra = combine(request.response, [p.response for p, _ in pairs], [v for _, v in pairs])
    if dropped := max(p.dropped_turns for p, _ in pairs):
        extra["dropped_turns"] = dropped  # messages of the conversation left out of the context
    return found, {**aligner._info(request, prompt_format, found), **extra}
