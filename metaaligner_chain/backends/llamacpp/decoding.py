"""One llama.cpp completion from token ids to text: which decoding loop runs, and what it yields.

`continuation` picks the loop: llama.cpp's DRY sampler for a `repeat_guard` retry (`sampling`),
copy-aware drafting from the response for greedy calls that ask for it (`drafting`; it records
each token's log-probability when `settings.record_logprobs`), else
`Llama.generate` with only temperature and top-p acting. `text_pieces` turns its tokens into text
pieces (never splitting a UTF-8 character) until end-of-generation or the token budget, counting
into a `Tally`. The caller owns the `Llama` (holds the backend's lock) and has restored the
prompt's cached prefix.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from metaaligner_chain.backends.base import Generation, GenerationSettings
from metaaligner_chain.backends.llamacpp.drafting import (
    DraftTally,
    Scored,
    drafted_greedy,
    response_span,
    token_bytes,
)
from metaaligner_chain.backends.llamacpp.loading import EXACT_BATCH
from metaaligner_chain.backends.llamacpp.sampling import guarded_tokens
from metaaligner_chain.drafting import CopyDrafter

#: `CopyDrafter` settings for drafted decoding: draft lengths in tokens per forward pass (a
#: rejected draft token costs most of a plain step on a CPU, so drafts start short), and how far
#: past the copy position a single matching token may re-synchronize.
DRAFTER = {"min_draft": 2, "max_draft": EXACT_BATCH // 2, "start_draft": 4, "window": 2}


@dataclass
class Tally:
    """What one completion used and how it ended, filled in as it decodes."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "length"
    drafts: DraftTally | None = None
    #: The tokens and their log-probabilities, for drafted decodings asked to record them.
    scored: Scored | None = None

    def generation(self, text: str) -> Generation:
        stats = None if self.drafts is None else self.drafts.as_stats()
        return Generation(
            text, self.finish_reason, self.prompt_tokens, self.completion_tokens, stats
        )


def continuation(
    llama: Any,
    prompt: str,
    tokens: list[int],
    settings: GenerationSettings,
    budget: int,
    response: str | None,
    tally: Tally,
) -> Iterator[int]:
    """The continuation's tokens: drafted from `response` when greedy and asked for, else
    llama.cpp's own sampling loop (both give the same greedy tokens); DRY for `repeat_guard`."""
    if settings.repeat_guard:
        return guarded_tokens(llama, tokens, temperature=settings.temperature,
                              top_p=settings.top_p, seed=settings.seed)
    if settings.drafting and settings.greedy and response:
        span = response_span(llama, prompt, tokens, response)
        drafter = CopyDrafter(span, context=tokens, **DRAFTER)
        tally.drafts = DraftTally()
        tally.scored = Scored() if settings.record_logprobs else None
        return drafted_greedy(llama, tokens, drafter, budget, tally.drafts, tally.scored)
    temp, top_p = (0.0, 1.0) if settings.greedy else (settings.temperature, settings.top_p)
    return llama.generate(  # top_k=0, min_p=0, typical_p=1: only temp and top_p act
        tokens, temp=temp, top_p=top_p, top_k=0, min_p=0.0, typical_p=1.0, repeat_penalty=1.0
    )


def text_pieces(
    llama: Any, token_ids: Iterator[int], budget: int, tally: Tally, strip_first_space: bool
) -> Iterator[str]:
    """The text of `token_ids` as they come, up to end-of-generation or `budget` tokens
    (`tally.finish_reason` says which); special tokens render as nothing, and the answer's first
    token drops its SentencePiece word-start space when `strip_first_space`."""
    import llama_cpp

    vocab = llama._model.vocab
    utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for token in token_ids:
        if llama_cpp.llama_vocab_is_eog(vocab, token):
            tally.finish_reason = "stop"
            break
        tally.completion_tokens += 1
        strip = int(strip_first_space and tally.completion_tokens == 1)
        piece = utf8.decode(token_bytes(llama, token, lstrip=strip))
        if piece:
            yield piece
        if tally.completion_tokens >= budget:
            tally.finish_reason = "length"
            break
    rest = utf8.decode(b"", final=True)
    if rest:
        yield rest

