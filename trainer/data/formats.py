"""Dataset adapters: raw preference data → `Group`s (one query, its responses, per-objective scores).

Every response of a group is compared with every other one by `trainer.data.reformulate`. Adapters
know the shapes of the paper's datasets (UltraFeedback, Anthropic HH-RLHF with score columns,
HelpSteer) and a generic JSONL; they score nothing themselves (see `trainer.data.score`). The rows
come from `trainer.data.sources`; `load_groups` checks each against its format's shape.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.data.sources import position, read_located

ULTRAFEEDBACK_OBJECTIVES = ("instruction_following", "honesty", "truthfulness", "helpfulness")
HELPSTEER_OBJECTIVES = ("helpfulness", "correctness", "coherence")
HELPSTEER_COLUMNS = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
_ASSISTANT = "\n\nAssistant:"


@dataclass(frozen=True)
class Response:
    """One response to a query and its score per objective key (higher is better)."""

    text: str
    scores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Group:
    """A query and the responses to compare pairwise.

    `history` holds earlier turns as (role, text) pairs, role "human" or "assistant".
    `keep` names objectives the first response already meets: it is trained to come back
    unchanged under them in "better" mode (a clean answer; see `trainer.data.reformulate`).
    """

    query: str
    responses: tuple[Response, ...]
    history: tuple[tuple[str, str], ...] = ()
    keep: tuple[str, ...] = ()


def load_groups(
    source: str,
    data_format: str,
    split: str = "train",
    records: Iterable[dict] | None = None,
    skipped: list[tuple[str, str]] | None = None,
) -> list[Group]:
    """Read `source` (or the given `records`) with the adapter for `data_format`.

    A row that cannot be read, or lacks a field the format needs, is named (file and line for
    JSONL) with the shape expected. With a `skipped` list such rows are recorded there as
    `(where, problem)` and left out instead (`--skip-bad-rows`).
    """
    adapter = ADAPTERS.get(data_format)
    if adapter is None:
        raise ValueError(f"`format` is {data_format!r}; choose one of {', '.join(ADAPTERS)}.")
    unreadable: list[tuple[str, str]] = []
    if records is not None:
        located = [(f"row {n}", row) for n, row in enumerate(records, 1)]
    else:
        located = read_located(source, split, unreadable)
    problems = [(where, problem, "") for where, problem in unreadable]
    good = []
    for where, row in located:
        try:
            list(adapter([row]))  # each row alone first, so a problem is named by its own line
        except (KeyError, TypeError, AttributeError, ValueError) as err:
            if isinstance(err, ValueError):  # the adapter's own message says what to write
                problems.append((where, str(err), ""))
                continue
            what = f"lacks the field {err}" if isinstance(err, KeyError) else f"has a field of the wrong type ({err})"
            problems.append((where, f"the {data_format} row {what}", f"; each row should be {SHAPES[data_format]}"))
            continue
        good.append(row)
    problems.sort(key=lambda p: position(p[0]))
    if problems and skipped is None:
        where, problem, fix = problems[0]
        more = f" ({len(problems) - 1} more bad row(s) after it)" if len(problems) > 1 else ""
        raise ValueError(
            f"{where}: {problem.rstrip('.')}{fix}{more}. Fix the row, or pass --skip-bad-rows to "
            "leave such rows out, counted."
        )
    if skipped is not None:
        skipped.extend((where, problem) for where, problem, _ in problems)
    return list(adapter(good))


def number(value: Any) -> float | None:
    """A finite float from a rating such as 5, "4" or 3.5; None for "N/A", "", None or NaN."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        result = float(str(value).strip()) if isinstance(value, str) else float(value)
    except ValueError:
        return None
    return result if math.isfinite(result) else None


def ultrafeedback(rows: Iterable[dict]) -> Iterator[Group]:
    """openbmb/UltraFeedback: `completions[].annotations.<objective>.Rating` (strings).

    A completion with any non-numeric rating ("N/A") is dropped; all remaining pairs compare.
    """
    for row in rows:
        kept = []
        for completion in row.get("completions") or []:
            notes = completion.get("annotations") or {}
            scores = {key: number((notes.get(key) or {}).get("Rating")) for key in ULTRAFEEDBACK_OBJECTIVES}
            if all(v is not None for v in scores.values()):
                kept.append(Response(completion["response"].strip(), scores))
        yield Group(row["instruction"], tuple(kept))


def hh_context(transcript: str) -> str:
    """The transcript up to the last assistant turn, as the reference builder cut it."""
    return _ASSISTANT.join(transcript.split(_ASSISTANT)[:-1]) + " " + _ASSISTANT


def hh_rlhf(rows: Iterable[dict]) -> Iterator[Group]:
    """Anthropic HH-RLHF `chosen`/`rejected` transcripts, scored by `<objective>_chosen` and
    `<objective>_rejected` columns; the context comes from `chosen`."""
    for row in rows:
        keys = [k[: -len("_chosen")] for k in row if k.endswith("_chosen")]
        keys = [k for k in keys if f"{k}_rejected" in row]
        responses = []
        for side in ("chosen", "rejected"):
            scores = {k: number(row[f"{k}_{side}"]) for k in keys}
            text = row[side].split(_ASSISTANT)[-1].strip()
            responses.append(Response(text, {k: v for k, v in scores.items() if v is not None}))
        yield Group(hh_context(row["chosen"]), tuple(responses))


def helpsteer(rows: Iterable[dict]) -> Iterator[Group]:
    """nvidia/HelpSteer: one row per (prompt, response) with numeric attributes; rows with the same
    prompt form one group, in order of first appearance."""
    grouped: dict[str, list[Response]] = {}
    for row in rows:
        scores = {k: number(row.get(k)) for k in HELPSTEER_COLUMNS if k in row}
        scores = {k: v for k, v in scores.items() if v is not None}
        grouped.setdefault(row["prompt"], []).append(Response(row["response"].strip(), scores))
    for query, responses in grouped.items():
        yield Group(query, tuple(responses))


def generic(rows: Iterable[dict]) -> Iterator[Group]:
    """Two row shapes, optionally with earlier turns in `context` ([[role, text], ...]):

    - a graded chain `{"query", "responses": [{"text", "scores": {objective: number}}]}`;
    - a rewrite `{"query", "answer", "objectives": [...], "rewrite"}`: the rewrite is better than
      the answer on every named objective; a rewrite equal to the answer marks a clean answer,
      to be kept as it is under those objectives.
    """
    for row in rows:
        history = parse_history(row.get("context"))
        if "responses" in row:
            responses = []
            for item in row["responses"]:
                scores = {k: number(v) for k, v in (item.get("scores") or {}).items()}
                kept = {k: v for k, v in scores.items() if v is not None}
                responses.append(Response(item["text"].strip(), kept))
            yield Group(row["query"], tuple(responses), history)
            continue
        missing = [k for k in ("query", "answer", "objectives", "rewrite") if k not in row]
        if missing:
            raise ValueError(
                f"the generic row has neither `responses` (a graded chain) "
                f"nor {', '.join(f'`{k}`' for k in missing)} (a rewrite); write "
                '{"query", "responses": [{"text", "scores"}]} or '
                '{"query", "answer", "objectives", "rewrite"}.'
            )
        keys = row["objectives"]
        if isinstance(keys, str) or not keys:
            raise ValueError(
                f"`objectives` is {keys!r}; give a non-empty list of objective "
                'keys, e.g. ["harmlessness", "length"].'
            )
        answer, rewrite = row["answer"].strip(), row["rewrite"].strip()
        if answer == rewrite:
            yield Group(row["query"], (Response(answer),), history, tuple(keys))
        else:
            better = Response(rewrite, {k: 1.0 for k in keys})
            yield Group(row["query"], (better, Response(answer, {k: 0.0 for k in keys})), history)


def parse_history(context: Any) -> tuple[tuple[str, str], ...]:
    """`context` as (role, text) turns; roles "human"/"user" and "assistant"/"ai"."""
    if not context:
        return ()
    roles = {"human": "human", "user": "human", "assistant": "assistant", "ai": "assistant"}
    turns = []
    for turn in context:
        role = roles.get(str(turn[0]).lower()) if isinstance(turn, (list, tuple)) and len(turn) == 2 else None
        if role is None:
            raise ValueError(
                f"`context` has the turn {turn!r}; write each earlier turn as "
                '["human", text] or ["assistant", text].'
            )
        turns.append((role, str(turn[1])))
    return tuple(turns)


def history_messages(history: Iterable[tuple[str, str]]) -> list[Any]:
    """(role, text) turns as LangChain messages, as the runnable takes them."""
    from langchain_core.messages import AIMessage, HumanMessage

    kinds = {"human": HumanMessage, "assistant": AIMessage}
    return [kinds[role](text) for role, text in history]


def default_objectives(data_format: str) -> tuple[str, ...]:
    """Objectives used when none are named: HelpSteer's quality attributes, else all scored."""
    return HELPSTEER_OBJECTIVES if data_format == "helpsteer" else ()


def write_groups(groups: Iterable[Group], path: str | Path) -> Path:
    """Write groups as generic-format JSONL (what `ma-train data score` produces)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as handle:
        for group in groups:
            item = {
                "query": group.query,
                "responses": [{"text": r.text, "scores": r.scores} for r in group.responses],
            }
            if group.history:
                item["context"] = [list(turn) for turn in group.history]
            handle.write(json.dumps(item, ensure_ascii=False) + "\n")
    return out


ADAPTERS = {
    "ultrafeedback": ultrafeedback,
    "hh-rlhf": hh_rlhf,
    "helpsteer": helpsteer,
    "generic": generic,
}
#: What one row of each format looks like (named in errors; the adapters' docstrings say more).
SHAPES = {
    "ultrafeedback": '{"instruction", "completions": [{"response", "annotations": {OBJECTIVE: {"Rating"}}}]}',
    "hh-rlhf": '{"chosen", "rejected", "<objective>_chosen", "<objective>_rejected"}',
    "helpsteer": '{"prompt", "response", "helpfulness", "correctness", ...}',
    "generic": '{"query", "responses": [{"text", "scores": {OBJECTIVE: number}}]} or '
               '{"query", "answer", "objectives", "rewrite"}',
}
