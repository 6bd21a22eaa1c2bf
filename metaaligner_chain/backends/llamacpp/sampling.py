"""Decoding with llama.cpp's DRY sampler ("don't repeat yourself"): the retry of a rewrite that
looped (`GenerationSettings.repeat_guard`).

DRY penalizes a token by how long a run it would repeat of what the continuation already wrote:
`multiplier * base ** (run - allowed_length)`. Only the generated tokens are given to the
sampler, so copying from the answer in the prompt (what a rewrite mostly does) is never
penalized. The values are the ones the sampler's author recommends (multiplier 0.8, base 1.75,
allowed length 2; llama.cpp's `--dry-*` options, its own defaults for base and length); on the
default aligner's validation split they turned all 13 looping rewrites into finished ones, 9
closer to the gold rewrite than the original and 2 further (examples/default_aligner/README.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from metaaligner_chain.backends.llamacpp.drafting import eval_prompt

#: (multiplier, base, allowed length, last n tokens looked at) of llama.cpp's DRY sampler.
DRY = (0.8, 1.75, 2, 1024)
#: Where a repeated run is cut short: what follows a line break, a colon, a quote or an
#: asterisk starts a new run (llama.cpp's default sequence breakers).
SEQUENCE_BREAKERS = ("\n", ":", '"', "*")


def guarded_tokens(llama: Any, tokens: Sequence[int], *, temperature: float, top_p: float,
                   seed: int | None) -> Iterator[int]:
    """The continuation of `tokens`, one token at a time, from a sampler chain of DRY then greedy
    (or top-p and temperature when `temperature > 0`); the cached prefix of `tokens` is reused."""
    import llama_cpp
    from llama_cpp import _internals

    sampler = _internals.LlamaSampler()
    multiplier, base, allowed, last_n = DRY
    sampler.add_dry(llama._model, multiplier, base, allowed, last_n, list(SEQUENCE_BREAKERS))
    if temperature <= 0.0:
        sampler.add_greedy()
    else:
        sampler.add_top_p(top_p, 1)
        sampler.add_temp(temperature)
        sampler.add_dist(llama_cpp.LLAMA_DEFAULT_SEED if seed is None else seed)
    try:
        eval_prompt(llama, tokens)
        while True:
            token = sampler.sample(llama._ctx, -1)  # samples and accepts: DRY sees only these
            yield token
            llama.eval([token])
    finally:
        sampler.close()
