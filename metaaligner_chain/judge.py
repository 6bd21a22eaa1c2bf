"""Whether a whole rewrite may replace the original (`judge`), and why not when it may not.

Read by the gate (`gate.decide`) once a rewrite is finished: cut at the token limit, too little of a
long answer kept when no objective asks for brevity, degenerate repetition (`loops`, also watched
while a rewrite streams), the prompt's instructions or an instruction lifted from inside the answer
copied. Thresholds were set on the training corpus's gold rewrites and checked on the default
aligner's validation outputs (`benchmarks/bench_gate.py` measures false rejections).
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Iterable


#: Objectives that ask for a shorter answer: a rewrite may then keep much less of the original.
BREVITY_KEYS = frozenset({"length", "repetition"})
_BREVITY_WORDS = re.compile(r"\b(concise|brief|briefer|short|shorter|shorten|succinct|summar\w*|terse)\b", re.I)
#: An original at least this long (characters) is a "long answer" that a rewrite must not gut.
LONG_ANSWER = 400
#: Objectives that ask for content to go (harmful, rude): a rewrite may then drop most of it.
REMOVAL_KEYS = frozenset({"harmlessness"})
_REMOVAL_WORDS = re.compile(r"\b(harm\w*|safe\w*|unsafe|toxic\w*|offensive|polite\w*|courteous|respectful)\b", re.I)
#: (share of the original's length, share of its content words): a rewrite of a long answer below
#: both is turned down. `MIN_KEPT` was chosen on the default aligner's validation split (178
#: items): it turns down 3 rewrites there, all farther from the gold rewrite than the original
#: (chrF losses 32 -> 29, no win lost), and 1.0% of the training corpus's gold rewrites (long,
#: tangled answers rewritten from scratch); (0.8, 0.6) turned down 2 more losses but 3.1% of the
#: gold rewrites and terse restructurings that keep the content. With an objective asking for removal
#: (`MIN_KEPT_REMOVAL`: refuse-and-redirect rewrites keep little) or brevity (`MIN_KEPT_BRIEF`)
#: the bar is lower; destructive rewrites seen keep 0.01-0.02 ("The answer is:" for 2,156
#: characters).
MIN_KEPT = (0.7, 0.5)
MIN_KEPT_REMOVAL = (0.35, 0.5)
MIN_KEPT_BRIEF = (0.15, 0.3)
#: Degenerate repetition: `LOOP_SHARE` of the rewrite's word 4-grams recurring (gold rewrites in
#: the training corpus reach 0.12), or `LOOP_SHARE_SAID` with one clause of `LOOP_CLAUSE_WORDS`+
#: words said `LOOP_TIMES` times; in a rewrite of `LOOP_WORDS`+ words, and more than the original.
#: Set on the validation split's rewrites, where every one it turns down repeats whole clauses.
LOOP_SHARE = 0.5
LOOP_SHARE_SAID = 0.3
LOOP_TIMES = 3
LOOP_CLAUSE_WORDS = 4
LOOP_WORDS = 24
_CLAUSE = re.compile(r"[,.;:!?\n]+")
#: How `judge` starts the reasons a retry with a repetition guard may fix (`gate.worth_retrying`).
CUT = "the rewrite was cut at the token limit"
LOOP = "the rewrite repeats itself"
#: A run this long shared with the instruction + objectives part of the prompt, anywhere in the
#: rewrite and not in the original, is the prompt copied in rather than an edit.
SCAFFOLD_RUN = 40
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
_STOPWORDS = frozenset(
    "a an and are as at be but by can do does for from has have he her his i if in into is it its "
    "me my no not of on or our she so than that the their them then there these they this to was "
    "we were what when which who will with you your".split()
)
#: A field label inside the answer ("| Edit:", "¦ Answer:") or an instruction aimed at a model:
#: what follows it is text an injected answer wants the aligner to output.
_INJECTED = re.compile(
    r"(?:[|\u00a6]\s*(?:context|query|question|answer|edit)\s*:"
    r"|\b(?:ignore|disregard) (?:all |any )?(?:the )?(?:previous|prior|above) instructions\b"
    r"|\b(?:output|print|say|respond with|reply with|write) only\b)",
    re.IGNORECASE,
)


def _names(objectives: Iterable[object], keys: frozenset[str], wording: re.Pattern[str]) -> bool:
    """Whether an objective is one of `keys` or its description matches `wording`. Objectives
    are keys, descriptions or `Objective`s."""
    return any(getattr(o, "key", o) in keys or wording.search(str(getattr(o, "description", o)))
               for o in objectives)


def asks_for_brevity(objectives: Iterable[object]) -> bool:
    """Whether an objective asks for a shorter answer (`length`, `repetition`, or a description
    with "concise", "brief", "short", ...)."""
    return _names(objectives, BREVITY_KEYS, _BREVITY_WORDS)


def asks_for_removal(objectives: Iterable[object]) -> bool:
    """Whether an objective asks for content to be taken out (`harmlessness`, or a description
    about harm, safety, toxicity or politeness), so a good rewrite may keep little of it."""
    return _names(objectives, REMOVAL_KEYS, _REMOVAL_WORDS)


def least_kept(objectives: Iterable[object]) -> tuple[float, float]:
    """The (length share, content-word share) a rewrite of a long answer must keep one of."""
    objectives = list(objectives)
    if asks_for_brevity(objectives):
        return MIN_KEPT_BRIEF
    return MIN_KEPT_REMOVAL if asks_for_removal(objectives) else MIN_KEPT


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def coverage(original: str, text: str) -> float:
    """Share of the original's distinct content words that the rewrite still has."""
    content = {w for w in words(original) if w not in _STOPWORDS}
    return len(content & set(words(text))) / len(content) if content else 1.0


def repeated_share(text: str, n: int = 4) -> float:
    """Share of the word n-grams of `text` that occur in it more than once (0: no repetition)."""
    tokens = words(text)
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    if not grams:
        return 0.0
    counts = Counter(grams)
    return sum(counts[g] > 1 for g in grams) / len(grams)


def most_repeated_clause(text: str) -> int:
    """How many times the most frequent clause (of `LOOP_CLAUSE_WORDS`+ words) occurs in `text`."""
    clauses = [" ".join(w) for part in _CLAUSE.split(text) if len(w := words(part)) >= LOOP_CLAUSE_WORDS]
    return max(Counter(clauses).values(), default=0)


def loops(text: str, original: str = "") -> bool:
    """Whether `text` has degenerated into repeating itself (more than `original` does)."""
    if len(words(text)) < LOOP_WORDS:
        return False
    share = repeated_share(text)
    if share <= repeated_share(original) + 0.2:
        return False
    said_again = most_repeated_clause(text) >= max(LOOP_TIMES, most_repeated_clause(original) + 1)
    return share >= LOOP_SHARE or (said_again and share >= LOOP_SHARE_SAID)


def shared_run(text: str, scaffold: str, original: str, least: int) -> bool:
    """Whether `text` shares a run of `least`+ characters with `scaffold` (the instruction +
    objectives part of the prompt) that is not copied from `original`."""
    if not scaffold:
        return False
    match = difflib.SequenceMatcher(None, text, scaffold, autojunk=False).find_longest_match(
        0, len(text), 0, len(scaffold)
    )
    return match.size >= least and text[match.a : match.a + match.size] not in original


def _lifted_instruction(text: str, original: str) -> str | None:
    """The injected instruction in `original` that `text` merely repeats, if it does."""
    target = " ".join(words(text))
    for found in _INJECTED.finditer(original):
        tail = " ".join(words(original[found.end() :].split("\n\n")[0]))
        lead = " ".join(words(found.group()))
        if target and (target in tail or target in f"{lead} {tail}") and len(text) < len(original) / 2:
            return found.group().strip()
    return None


def judge(original: str, text: str, *, finish_reason: str | None = None, scaffold: str = "",
          objectives: Iterable[object] = ()) -> str | None:
    """Why the whole rewrite `text` must not replace `original`, or `None` when it may."""
    if finish_reason == "length":
        return f"{CUT} (raise max_new_tokens)"
    if shared_run(text, scaffold, original, SCAFFOLD_RUN):
        return "the rewrite copies the prompt's instructions or objective descriptions"
    if (lifted := _lifted_instruction(text, original)) is not None:
        return f"the rewrite only repeats an instruction found inside the answer ({lifted!r})"
    if len(original) >= LONG_ANSWER:
        ratio, kept = len(text) / len(original), coverage(original, text)
        least = least_kept(objectives)
        if ratio < least[0] and kept < least[1]:
            return (f"the rewrite keeps too little of a long answer ({len(text)} of {len(original)} "
                    f"characters, {kept:.0%} of its content words)")
    if loops(text, original):
        return (f"{LOOP} ({repeated_share(text):.0%} of its 4-word phrases recur, "
                f"a clause up to {most_repeated_clause(text)} times)")
    return None
