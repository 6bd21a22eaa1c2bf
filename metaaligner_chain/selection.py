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
fell back is the original's text, and votes as such (leaving fallbacks out did no better on
validation: sixteenth look). `original_margin` gives the original back when the candidates agree
with it more than with the one chosen among them: a small aligner's samples of a clean answer each
edit it their own way, and the original is then closer to all of them than any edit is to the
others (the built-in default records 5 chrF points: sixteenth look).
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
           fallbacks_vote: bool = FALLBACKS_VOTE, original_margin: float | None = None) -> Verdict:
    """The verdict whose text agrees most with the others' and the original's. A fallback's text
    is the original: with `fallbacks_vote` it counts, and may win, as such; without, it neither
    votes nor is chosen unless every verdict fell back. With `original_margin`, the original goes
    out instead when the candidates agree with it more than with the chosen one: its mean chrF
    against them beats the chosen one's mean chrF against the others by more than that many
    points (the metadata's ``kept`` says so, ``rejected`` holds the rewrite). The first of equals
    wins, so one verdict comes back as it is. The chosen verdict records how many there were,
    which it was (the count: the original), and which fell back (with the rewrite the gate turned
    down, if any)."""
    if len(verdicts) == 1:
        return verdicts[0]
    similar = functools.cache(similarity)  # each pair scored once (the vote, then the margin)
    fell_back = tuple(i for i, verdict in enumerate(verdicts) if verdict.fallback_reason)
    voters = [i for i in range(len(verdicts)) if fallbacks_vote or i not in fell_back]
    voters = voters or [0]  # every one fell back: all are the original's text
    texts = [verdicts[i].text for i in voters]
    references = [*texts, original]
    weights = [1.0] * len(texts) + [original_weight]
    options = [*texts, original] if original_candidate else texts

    def support(i: int) -> float:
        return sum(w * similar(options[i], ref)
                   for j, (ref, w) in enumerate(zip(references, weights)) if j != i and w)

    scores = [support(i) for i in range(len(options))]
    best = max(range(len(options)), key=lambda i: (scores[i], -i))
    index = voters[best] if best < len(voters) else len(verdicts)
    kept = "the rewrites agree more with the original than with any one of them"
    if original_margin is not None and index < len(verdicts) and len(texts) > 1:
        own = sum(similar(original, text) for text in texts) / len(texts)
        others = [text for j, text in enumerate(texts) if j != best]
        theirs = sum(similar(texts[best], text) for text in others) / len(others)
        if own - theirs > original_margin:
            kept = (f"the rewrites agree more with the original (mean chrF {own:.1f}) than with "
                    f"the one chosen among them ({theirs:.1f}; original_margin={original_margin})")
            index = len(verdicts)
    if index < len(verdicts):
        chosen = verdicts[index]
    else:
        given_up = verdicts[voters[best]] if best < len(voters) else verdicts[0]
        chosen = replace(given_up, text=original, rejected=given_up.text, kept=kept)
    turned_down = tuple((i, verdicts[i].rejected) for i in fell_back)
    return replace(chosen, chosen=(index, len(verdicts)), fell_back=turned_down,
                   candidates=tuple(v.text for i, v in enumerate(verdicts) if i != index))
