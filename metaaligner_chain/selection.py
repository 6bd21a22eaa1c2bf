"""Choose one of several rewrites of an answer: the one the others agree with most.

With `MetaAlignerRunnable(candidates=N)` the aligner writes N rewrites of each answer (its own
decoding, then N - 1 samples) and `choose` keeps the one with the highest summed similarity to
the other rewrites and to the original answer: minimum Bayes risk decoding (Kumar & Byrne,
2004; Freitag et al., 2022, "High Quality Rather than High Model Probability") with sentence
chrF (`sacrebleu`) as the utility. A rewrite only one draw makes (an invented detail, a dropped
step, an edit of a clean answer) finds no support among the others and loses to one they share.
The original may count as one more reference (`ORIGINAL_WEIGHT`) and, with `ORIGINAL_CANDIDATE`,
be chosen itself; on the default aligner's validation sets both did worse than leaving it out
(weight 0, not a candidate: examples/default_aligner/README.md, fifteenth look). A candidate that
fell back is the original's text, and votes as such.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from metaaligner_chain.backends.base import AlignerConfigError
from metaaligner_chain.gate import Verdict

#: The original answer's weight as a reference, against 1 for each rewrite.
ORIGINAL_WEIGHT = 0.0
#: Whether the original answer may itself be chosen.
ORIGINAL_CANDIDATE = False
#: Whether a candidate that fell back (its text is the original's) votes and may be chosen.
FALLBACKS_VOTE = True


@functools.cache
def _chrf() -> Any:
    try:
        from sacrebleu.metrics import CHRF
    except ImportError as exc:
        raise AlignerConfigError(
            "candidates > 1 chooses among rewrites by chrF, which needs sacrebleu: "
            "pip install 'metaaligner-chain[gguf]' (or [hf]), or pip install sacrebleu; "
            "or set candidates=1"
        ) from exc
    return CHRF()


def similarity(text: str, reference: str) -> float:
    """Sentence chrF of `text` against `reference`, 0-100."""
    return _chrf().sentence_score(text, [reference]).score


def choose(original: str, verdicts: Sequence[Verdict], original_weight: float = ORIGINAL_WEIGHT,
           original_candidate: bool = ORIGINAL_CANDIDATE,
           fallbacks_vote: bool = FALLBACKS_VOTE) -> Verdict:
    """The verdict whose text agrees most with the others' and the original's. A fallback's text
    is the original: with `fallbacks_vote` it counts, and may win, as such; without, it neither
    votes nor is chosen unless every verdict fell back. The first of equals wins, so one verdict
    comes back as it is. The chosen verdict records how many there were, which it was, and which
    fell back (with the rewrite the gate turned down, if any)."""
    if len(verdicts) == 1:
        return verdicts[0]
    fell_back = tuple(i for i, verdict in enumerate(verdicts) if verdict.fallback_reason)
    voters = [i for i in range(len(verdicts)) if fallbacks_vote or i not in fell_back]
    voters = voters or [0]  # every one fell back: all are the original's text
    texts = [verdicts[i].text for i in voters]
    references = [*texts, original]
    weights = [1.0] * len(texts) + [original_weight]
    options = [*texts, original] if original_candidate else texts

    def support(i: int) -> float:
        return sum(w * similarity(options[i], ref)
                   for j, (ref, w) in enumerate(zip(references, weights)) if j != i and w)

    scores = [support(i) for i in range(len(options))]
    best = max(range(len(options)), key=lambda i: (scores[i], -i))
    index = voters[best] if best < len(voters) else len(verdicts)
    chosen = (verdicts[index] if index < len(verdicts) else
              replace(verdicts[0], text=original, rejected=verdicts[0].text,
                      kept="the rewrites agree more with the original than with any one of them"))
    turned_down = tuple((i, verdicts[i].rejected) for i in fell_back)
    return replace(chosen, chosen=(index, len(verdicts)), fell_back=turned_down,
                   candidates=tuple(v.text for i, v in enumerate(verdicts) if i != index))
