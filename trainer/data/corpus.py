"""A written rewrite corpus: items read with their file and line, checked, and described.

Items are the generic format's rows (`trainer.data.generic`) with bookkeeping keys: `kind`
("rewrite", "clean" or "chain"), `fixes` (objectives the answer violates), `flaws`, `topic`,
`source` and, in an evaluation set, `checks` ({"must_drop": [...], "must_keep": [...]}).
The rules are in examples/default_aligner/corpus/GUIDELINES.md.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

from trainer.jsonl import numbered

KINDS = ("rewrite", "clean", "chain")
_WORD = re.compile(r"[a-z0-9']+")


@dataclass(frozen=True)
class Item:
    """One corpus row and where it came from (`path:line`)."""

    row: dict[str, Any]
    where: str

    @property
    def kind(self) -> str:
        return self.row["kind"]


def read_jsonl(path: str | Path) -> list[Item]:
    """Every non-blank line of a JSONL file as an Item; bad JSON names its file and line."""
    return [Item(row, where) for where, row in numbered(path)]


def load(paths: Iterable[str | Path], objectives: Sequence[str]) -> list[Item]:
    """Read and check every file; `objectives` are the keys items may name."""
    items = [item for path in paths for item in read_jsonl(path)]
    problems = [p for item in items for p in check(item, objectives)]
    seen: dict[str, str] = {}
    for item in items:
        key = item.row.get("id")
        if key in seen:
            problems.append(f"{item.where}: id {key!r} is also at {seen[key]}")
        seen.setdefault(key, item.where)
    if problems:
        shown = "\n".join(problems[:20])
        more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ValueError(f"{len(problems)} problem(s) in the corpus:\n{shown}{more}")
    return items


def check(item: Item, objectives: Sequence[str]) -> list[str]:
    """What is wrong with one item, as messages naming its place, field and value."""
    row, at = item.row, item.where
    kind = row.get("kind")
    if kind not in KINDS:
        return [f"{at}: `kind` is {kind!r}; use one of {', '.join(KINDS)}"]
    need = ("id", "query", "responses") if kind == "chain" else (
        "id", "query", "answer", "objectives", "fixes", "rewrite")
    missing = [k for k in need if k not in row]
    if missing:
        return [f"{at}: missing {', '.join(f'`{k}`' for k in missing)}"]
    if kind == "chain":
        return _check_chain(row, at, objectives)
    problems = []
    unknown = [k for k in dict.fromkeys([*row["objectives"], *row["fixes"]]) if k not in objectives]
    if unknown:
        problems.append(f"{at}: objective(s) {unknown} are not among {', '.join(objectives)}")
    if not set(row["fixes"]) <= set(row["objectives"]):
        problems.append(f"{at}: `fixes` {row['fixes']} are not all in `objectives` {row['objectives']}")
    same = row["answer"].strip() == row["rewrite"].strip()
    if kind == "clean" and (not same or row["fixes"]):
        problems.append(f"{at}: a clean item has `rewrite` equal to `answer` and no `fixes`")
    if kind == "rewrite" and (same or not row["fixes"]):
        problems.append(f"{at}: a rewrite item has a `rewrite` that differs from `answer` and `fixes`")
    return problems + _check_checks(row, at)


def _check_chain(row: dict, at: str, objectives: Sequence[str]) -> list[str]:
    responses = row["responses"]
    keys = [sorted((r.get("scores") or {})) for r in responses]
    if len(responses) < 2 or any(k != keys[0] for k in keys) or not keys[0]:
        return [f"{at}: a chain needs 2+ responses scored on the same objectives, got {keys}"]
    unknown = [k for k in keys[0] if k not in objectives]
    return [f"{at}: objective(s) {unknown} are not among {', '.join(objectives)}"] if unknown else []


def _check_checks(row: dict, at: str) -> list[str]:
    checks = row.get("checks")
    if checks is None:
        return []
    problems = []
    answer, rewrite = row["answer"].lower(), row["rewrite"].lower()
    for phrase in checks.get("must_drop", []):
        if phrase.lower() not in answer or phrase.lower() in rewrite:
            problems.append(f"{at}: must_drop {phrase!r} must be in `answer` and not in `rewrite`")
    for phrase in checks.get("must_keep", []):
        if phrase.lower() not in rewrite:
            problems.append(f"{at}: must_keep {phrase!r} is not in `rewrite`")
    return problems


def checks_passed(text: str, checks: dict[str, list[str]]) -> tuple[int, int]:
    """(checks `text` passes, checks in all): must_drop phrases absent, must_keep present."""
    low = text.lower()
    drop, keep = checks.get("must_drop", []), checks.get("must_keep", [])
    passed = sum(p.lower() not in low for p in drop) + sum(p.lower() in low for p in keep)
    return passed, len(drop) + len(keep)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def distinct_ngrams(texts: Iterable[str], n: int = 3) -> float:
    """Distinct n-grams over all n-grams of `texts` (1.0: no n-gram repeats)."""
    grams = [tuple(w[i:i + n]) for t in texts for w in [words(t)] for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def openings(texts: Iterable[str], n: int = 3) -> Counter:
    """How often each text's first `n` words open a text (a reused template shows up here)."""
    return Counter(" ".join(words(t)[:n]) for t in texts if words(t))


def nearest(queries: Sequence[str], others: Sequence[str]) -> tuple[float, str, str]:
    """The most similar (query, other) pair by character similarity: (ratio, query, other).

    Candidates are first narrowed by shared words, so thousands of pairs stay cheap.
    """
    best = (0.0, "", "")
    other_words = [(o, set(words(o))) for o in others]
    for query in queries:
        mine = set(words(query))
        ranked = sorted(other_words, key=lambda ow: -len(mine & ow[1]))[:5]
        for other, _ in ranked:
            ratio = SequenceMatcher(None, query.lower(), other.lower()).ratio()
            if ratio > best[0]:
                best = (ratio, query, other)
    return best
