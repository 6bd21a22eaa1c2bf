"""Copy-aware drafts: guess the aligner's next tokens by copying ahead from the response it rewrites.

An aligner mostly copies its input answer. `CopyDrafter` finds where the generation is in that
answer (the longest recent suffix that occurs there, preferring the place it was last copying
from, so it re-synchronizes after an edit) and proposes the tokens that follow. The draft length
adapts to how much of recent drafts was accepted, and after drafts that were wholly rejected the
drafter pauses (1, 2, 4, ... tokens) so a rewrite that stopped copying costs plain decoding.
Where the generation is not in the response (an inserted sentence, a model that does not copy),
it falls back to what the engines' stock prompt lookup does: the tokens that followed the last
occurrence of the generation's last one or two tokens in the prompt or in the generation itself
(a list, a repeated phrase). Pure: token ids in, token ids out, no model.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence


class CopyDrafter:
    """Proposes up to `k` next tokens copied from `source`; `k` doubles on full acceptance.

    Args:
        source: token ids of the response being rewritten.
        max_ngram: longest generated suffix looked up in `source`.
        min_draft / max_draft: bounds of the adaptive draft length `k`.
        window: a 1-token match only counts within this many tokens after the cursor (a single
            common token elsewhere is too weak a signal to copy from).
        max_pause: longest pause (in `propose` calls) after consecutive wholly rejected drafts.
        context: token ids of the whole prompt, searched (with the generation) when the
            generation is not in `source`; empty turns the fallback search off.
        lookup_ngram: longest suffix the fallback search matches (stock prompt lookup: 2).
        max_lookup: longest fallback draft (None: the current draft length `k`).
        earliest: the fallback takes the first occurrence of the suffix in the prompt, then in the
            generation (transformers' stock lookup's order), instead of the latest in the
            generation, then the latest in the prompt.
        fixed_lookup: fallback drafts always `max_lookup` long, never paused, their outcome left
            out of `k` and the pauses (stock prompt lookup's way; suits an engine whose longer
            forwards cost little more than one-token ones).
        min_match: copy from `source` only where the generation's last tokens match it over at
            least this many tokens (up to 4); a weaker match drafts by lookup instead.

    After `propose`, `copying` says whether its draft was copied from `source` (False: looked up).
    """

    def __init__(
        self,
        source: Sequence[int],
        *,
        max_ngram: int = 4,
        min_draft: int = 2,
        max_draft: int = 16,
        start_draft: int = 8,
        window: int = 8,
        max_pause: int = 16,
        context: Sequence[int] = (),
        lookup_ngram: int = 2,
        max_lookup: int | None = None,
        fixed_lookup: bool = False,
        earliest: bool = False,
        min_match: int = 1,
    ):
        self.source = list(source)
        self.max_ngram = max_ngram
        self.min_draft, self.max_draft = min_draft, max_draft
        self.k = max(min_draft, min(start_draft, max_draft))
        self.window = window
        self.cursor = 0  # where in `source` the generation was last copying from
        self.max_pause = max_pause
        self.misses = 0  # consecutive drafts with nothing accepted
        self.pause = 0  # `propose` calls left to answer with no draft
        self._index = _ngram_ends(self.source, max_ngram)
        self.context = list(context)
        self.lookup_ngram = lookup_ngram
        self.max_lookup = max_lookup
        self.fixed_lookup = fixed_lookup and max_lookup is not None
        self.earliest = earliest
        self.min_match = min_match
        self.copying = False
        self._context_index = _ngram_ends(self.context, lookup_ngram)

    def locate(self, generated: Sequence[int]) -> int | None:
        """The position in `source` right after the generation's current suffix, if it is there."""
        if not generated:
            return 0
        for n in range(min(self.max_ngram, len(generated)), 0, -1):
            ends = self._index.get(tuple(generated[-n:]))
            if not ends:
                continue
            ahead = [e for e in ends if e >= self.cursor]
            if n == 1:
                ahead = [e for e in ahead if e - self.cursor <= self.window]
                if ahead:
                    return ahead[0]
                continue
            return ahead[0] if ahead else ends[-1]
        return None

    def propose(self, generated: Sequence[int]) -> list[int]:
        """Up to `k` tokens that would follow `generated` if it keeps copying `source`."""
        if self.pause and not self.fixed_lookup:
            self.pause -= 1
            return []
        end = self.locate(generated)
        self.copying = end is not None
        if end is None:
            return self.lookup(generated)
        if self.pause:  # fixed lookups go on while copying pauses
            self.pause -= 1
            draft = []
        else:
            self.cursor = end
            draft = self.source[end : end + self.k]
        if self.min_match > 1 and _suffix_match(self.source, self.cursor, generated) < self.min_match:
            self.copying = False  # too weak to copy on: what the lookup would draft instead
            return self.lookup(generated)
        return draft

    def lookup(self, generated: Sequence[int]) -> list[int]:
        """Up to `k` tokens that followed an earlier occurrence of the generation's last
        `lookup_ngram` (or fewer) tokens in the prompt followed by the generation: the latest in
        the generation, else the latest in the prompt; with `earliest`, the first in the prompt,
        else the first in the generation."""
        if self.fixed_lookup:
            k = self.max_lookup
        else:
            k = self.k if self.max_lookup is None else min(self.k, self.max_lookup)
        for n in range(min(self.lookup_ngram, len(generated)), 0, -1):
            suffix = tuple(generated[-n:])
            ends = self._context_index.get(suffix)
            if ends and self.earliest:
                return (self.context[ends[0] : ends[0] + k] + list(generated))[:k]
            starts = range(len(generated) - n)  # the suffix itself excluded
            for start in starts if self.earliest else reversed(starts):
                if tuple(generated[start : start + n]) == suffix:
                    return list(generated[start + n : start + n + k])
            if ends:
                return (self.context[ends[-1] : ends[-1] + k] + list(generated))[:k]
        return []

    def update(self, proposed: int, accepted: int) -> None:
        """Record how many of `proposed` draft tokens the model agreed with; adapt `k`."""
        if self.fixed_lookup and not self.copying:
            return
        self.cursor += accepted
        if proposed and not accepted:
            self.misses += 1
            self.pause = min(self.max_pause, 1 << (self.misses - 1))
        elif accepted:
            self.misses = 0
        if proposed and accepted == proposed:
            self.k = min(self.max_draft, self.k * 2)
        elif proposed:
            self.k = max(self.min_draft, min(self.k - 1, accepted + 1))


def _suffix_match(source: Sequence[int], end: int, generated: Sequence[int]) -> int:
    """How many of `generated`'s last tokens equal `source[:end]`'s last tokens (up to 4)."""
    n = 0
    while n < 4 and n < end and n < len(generated) and source[end - 1 - n] == generated[-1 - n]:
        n += 1
    return n


def _ngram_ends(tokens: Sequence[int], longest: int) -> dict[tuple[int, ...], list[int]]:
    """Every n-gram of `tokens` (n = 1..longest) mapped to the positions right after it, ascending."""
    index: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for n in range(1, longest + 1):
        for end in range(n, len(tokens) + 1):
            index[tuple(tokens[end - n : end])].append(end)
    return index


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the common prefix of two token sequences (how much KV state they can share)."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
