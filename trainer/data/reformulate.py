"""Dynamic objectives reformulation, the paper's Algorithm 1: scored pairs → training rows.

For a pair (y1, y2) the objectives split into O≻ (y1 better), O≺ (y2 better) and O≡ (tie):
O≻ gives T(q, y2, O≻, "better") → y1, O≺ gives T(q, y1, O≺, "better") → y2, O≡ gives
T(q, y2, O≡, "equal") → y1. Each objective list is shuffled with the seed and never empty.
Warm-up rows copy a seeded sample of the equal rows with the target set to the input answer.
Queries are split into train and validation before any row is made, so no query is in both.

Every row's target is the response that is better or equal on the objectives scored for both
(for an equal row: the one no worse on any objective, else the one with the higher total), so a
pair listed worse-first never teaches turning a good answer into the flawed one. Deviation from
the paper: a clean answer (`Group.keep`) gives a "better" row whose target is the answer itself,
so that the aligner learns to leave a good answer alone under "improve it" too.

Also not in the paper: with `paraphrases`, a seeded share of the training queries word their
objectives in other ways ("Safety: the answer must not ..." for harmlessness), so that a small
aligner reads the description it is given instead of keying on a few trained names.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metaaligner_chain.coerce import context_text
from metaaligner_chain.objectives import WRITTEN, Objective, catalogue, describe
from metaaligner_chain.prompt import build_prompt
from trainer.config import DataConfig, STAGES
from trainer.data.formats import Group, default_objectives, history_messages


@dataclass(frozen=True)
class Row:
    """One SFT example; `response` is the input answer inside `prompt` (kept for warm-up)."""

    prompt: str
    completion: str
    objectives: tuple[str, ...]
    mode: str
    response: str

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "completion": self.completion,
            "objectives": list(self.objectives),
            "mode": self.mode,
        }


def objective_table(
    keys: Iterable[str], prompt_format: str, descriptions: dict[str, str]
) -> dict[str, Objective]:
    """Key → Objective: given descriptions first, then the one table
    (`metaaligner_chain.objectives.describe`: the prompt format's catalogue, then our written ones)."""
    table = {}
    for key in keys:
        if key in descriptions:
            table[key] = Objective(key, Objective.parse(descriptions[key]).description)
        elif (found := describe(key, prompt_format)) is not None:
            table[key] = found
        else:
            raise ValueError(
                f"objective {key!r} in the data has no description for prompt format "
                f"{prompt_format!r}; known keys: {', '.join({**catalogue(prompt_format), **WRITTEN})}. "
                "Describe it, e.g. "
                f"descriptions: {{{key}: '{key.capitalize()}: the response should ...'}} in the "
                f"recipe or --descriptions {key}='{key.capitalize()}: the response should ...'."
            )
    return table


#: What a paraphrases file holds, for error messages.
PARAPHRASES_SHAPE = 'a JSON file of other wordings per objective, e.g. {"harmlessness": ["Safety: ..."]}'


def paraphrase_table(
    path: str | None, fraction: float, keys: Collection[str], field: str = "paraphrases"
) -> dict[str, list[Objective]]:
    """Key → other wordings from the JSON file at `path` (`DataConfig.paraphrases`); {} without
    one. Each wording is 'Name: description' and keeps the key it rewords, one of `keys`;
    errors name `field`, the option that gave the file."""
    if path is None:
        if fraction > 0:
            raise ValueError(f"`paraphrase_fraction` {fraction} needs `{field}`: {PARAPHRASES_SHAPE}")
        return {}
    try:
        found = json.loads(Path(path).expanduser().read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"`{field}` {path!r} cannot be read as JSON ({exc}); give {PARAPHRASES_SHAPE}") from exc
    if not isinstance(found, dict):
        raise ValueError(f"`{field}` {path!r} holds a {type(found).__name__}; it must map objective "
                         'keys to lists of wordings, e.g. {"harmlessness": ["Safety: ..."]}')
    out = {}
    for key, wordings in found.items():
        if key not in keys:
            raise ValueError(f"`{field}` {path!r} rewords {key!r}, which this build does not "
                             f"train (its objectives: {', '.join(keys)}); drop it or train it")
        if not isinstance(wordings, list) or not wordings or not all(isinstance(w, str) for w in wordings):
            raise ValueError(f"`{field}` {path!r}: {key!r} must be a non-empty list of "
                             f"'Name: description' strings, not {wordings!r}")
        try:
            out[key] = [Objective(key, Objective.parse(w).description) for w in wordings]
        except ValueError as exc:
            raise ValueError(f"`{field}` {path!r}, {key!r}: {exc}") from exc
    return out


def reworded(table: dict[str, Objective], wordings: dict[str, list[Objective]],
             rng: random.Random) -> dict[str, Objective]:
    """The table with one of its other wordings drawn for every key that has some."""
    return {key: rng.choice(wordings[key]) if key in wordings else objective
            for key, objective in table.items()}


def pair_rows(
    query: Any,
    y1: str,
    y2: str,
    scores1: dict[str, float],
    scores2: dict[str, float],
    table: dict[str, Objective],
    prompt_format: str,
    tolerance: float,
    rng: random.Random,
) -> list[Row]:
    """Algorithm 1 on one pair: up to two preference rows and one equal row."""
    keys = [k for k in table if k in scores1 and k in scores2]
    better1 = [k for k in keys if scores1[k] - scores2[k] > tolerance]
    better2 = [k for k in keys if scores2[k] - scores1[k] > tolerance]
    tied = [k for k in keys if k not in better1 and k not in better2]
    # The equal row's target: the response no worse on any objective, else the higher total.
    first_wins = not better2 or (
        better1 and sum(scores1[k] for k in keys) >= sum(scores2[k] for k in keys)
    )
    equal = (tied, y2, y1, "equal") if first_wins else (tied, y1, y2, "equal")
    rows = []
    for chosen, source, target, mode in (
        (better1, y2, y1, "better"),
        (better2, y1, y2, "better"),
        equal,
    ):
        if not chosen:
            continue
        rng.shuffle(chosen)
        objectives = [table[k] for k in chosen]
        context = context_text(query, prompt_format)  # as the runnable serves it
        prompt = build_prompt(context, source, objectives, prompt_format=prompt_format, mode=mode)
        rows.append(Row(prompt, target, tuple(chosen), mode, source))
    return rows


def keep_row(
    query: Any, text: str, keys: Iterable[str], table: dict[str, Objective], prompt_format: str,
    rng: random.Random,
) -> Row | None:
    """A clean answer under the objectives it meets that are trained: T(q, y, O, "better") → y."""
    chosen = [k for k in keys if k in table]
    if not chosen:
        return None
    rng.shuffle(chosen)
    context = context_text(query, prompt_format)
    prompt = build_prompt(context, text, [table[k] for k in chosen], prompt_format=prompt_format,
                          mode="better")
    return Row(prompt, text, tuple(chosen), "better", text)


def conversation(group: Group) -> Any:
    """The group's query as the runnable receives it: text, or earlier turns plus the query."""
    if not group.history:
        return group.query
    return history_messages([*group.history, ("human", group.query)])


def split_queries(groups: list[Group], val_fraction: float, seed: int) -> set[str]:
    """The validation queries: a seeded sample of the distinct queries."""
    queries = list(dict.fromkeys(g.query for g in groups))
    count = round(val_fraction * len(queries))
    if val_fraction > 0 and len(queries) > 1:
        count = max(count, 1)
    return set(random.Random(seed).sample(queries, count))


def warmup_rows(equal: list[Row], fraction: float, seed: int) -> list[Row]:
    """Identity rows: a seeded sample of the equal rows whose target is their own input answer."""
    count = round(fraction * len(equal))
    if fraction > 0 and equal:
        count = max(count, 1)
    picked = sorted(random.Random(seed).sample(range(len(equal)), count))
    return [Row(equal[i].prompt, equal[i].response, equal[i].objectives, "equal", equal[i].response) for i in picked]


def reformulate(
    groups: list[Group], config: DataConfig, progress: Callable[[list], Iterable] | None = None
) -> dict[str, dict[str, list[Row]]]:
    """Rows per split ('train', 'val') and stage ('warmup', 'equal', 'preference').

    `progress` may wrap the groups in a progress bar (e.g. `rich.progress.track`).
    """
    prompt_format = config.resolved_prompt_format
    wanted = config.objectives or default_objectives(config.format)
    keys = wanted or list(dict.fromkeys(
        k for g in groups for k in (*(k for r in g.responses for k in r.scores), *g.keep)
    ))
    if not keys:
        raise ValueError(
            f"`input` {config.input!r} has no per-objective scores; label it first with "
            "`ma-train data score ... --models KEY=REWARD_MODEL`."
        )
    table = objective_table(keys, prompt_format, dict(config.descriptions))
    wordings = paraphrase_table(config.paraphrases, config.paraphrase_fraction, table)
    rng = random.Random(config.seed)
    # Its own generator, so that the rows of a build without paraphrases stay as they were.
    reword = random.Random(f"{config.seed}-paraphrases")
    val_queries = split_queries(groups, config.val_fraction, config.seed)
    splits: dict[str, dict[str, list[Row]]] = {s: {st: [] for st in STAGES} for s in ("train", "val")}
    for group in progress(groups) if progress else groups:
        validation = group.query in val_queries
        target = splits["val" if validation else "train"]
        words = table
        if wordings and not validation and reword.random() < config.paraphrase_fraction:
            words = reworded(table, wordings, reword)
        query, responses = conversation(group), group.responses
        kept = keep_row(query, responses[0].text, group.keep, words, prompt_format, rng)
        if kept is not None:
            target["preference"].append(kept)
        for i in range(len(responses)):
            for j in range(i + 1, len(responses)):
                a, b = responses[i], responses[j]
                for row in pair_rows(
                    query, a.text, b.text, a.scores, b.scores, words,
                    prompt_format, config.tie_tolerance, rng,
                ):
                    target["preference" if row.mode == "better" else "equal"].append(row)
    for split in splits.values():
        split["warmup"] = warmup_rows(split["equal"], config.warmup_fraction, config.seed)
    return splits


def summarize(splits: dict[str, dict[str, list[Row]]], config: DataConfig, groups: int) -> dict:
    """Counts per file and per objective, plus the settings that made them."""
    files = {}
    for split, stages in splits.items():
        for stage, rows in stages.items():
            name = f"{stage}.jsonl" if split == "train" else f"val/{stage}.jsonl"
            per_objective = Counter(k for row in rows for k in row.objectives)
            files[name] = {"rows": len(rows), "objectives": dict(sorted(per_objective.items()))}
    objectives = sorted({k for s in splits.values() for rows in s.values() for r in rows for k in r.objectives})
    reworded_settings = {"paraphrases": config.paraphrases,
                         "paraphrase_fraction": config.paraphrase_fraction} if config.paraphrases else {}
    return {
        "input": config.input,
        "format": config.format,
        "prompt_format": config.resolved_prompt_format,
        "objectives": objectives,
        "groups": groups,
        "seed": config.seed,
        "warmup_fraction": config.warmup_fraction,
        "tie_tolerance": config.tie_tolerance,
        "val_fraction": config.val_fraction,
        **reworded_settings,
        "files": files,
    }


def write_rows(rows: list[Row], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        for row in rows:
            handle.write(json.dumps(row.to_json(), ensure_ascii=False) + "\n")


def write_splits(splits: dict[str, dict[str, list[Row]]], summary: dict, out: str | Path) -> Path:
    """Write DIR/<stage>.jsonl, DIR/val/<stage>.jsonl and DIR/summary.json (removed first and
    written last, so a summary always describes the rows beside it)."""
    out = Path(out)
    (out / "summary.json").unlink(missing_ok=True)
    for name in summary["files"]:
        split = "val" if name.startswith("val/") else "train"
        write_rows(splits[split][Path(name).stem], out / name)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return out
