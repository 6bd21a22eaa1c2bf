"""Evaluate an aligner per objective: align each test response, judge aligned vs original (and vs
golden), then write `results.json`, `report.md`, `winrates.png` and per-item JSONL to a folder.

TEST rows are JSONL `{"query", "response", "golden"?}` (`response` may be left out with a
`policy`). Resumable: aligned answers and judgements already in the folder are reused, keyed by a
stable hash of the item, the objective (with its description), the judge and the texts compared.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from metaaligner_chain.objectives import Objective, resolve
from trainer.evaluate import ledger
from trainer.jsonl import read_jsonl

#: Comparisons judged per objective, as (name, x field, y field); golden ones need a golden.
COMPARISONS = (
    ("aligned_vs_original", "aligned", "response"),
    ("aligned_vs_golden", "aligned", "golden"),
    ("original_vs_golden", "response", "golden"),
)


def evaluate(
    data: str | Path | Sequence[Mapping[str, Any]],
    aligner: Any = "default",
    objectives: Sequence[str | Objective] = ("harmlessness",),
    out_dir: str | Path = "eval-out",
    *,
    judge: Any = "offline",
    scorers: Mapping[str, Any] | None = None,
    prompt_format: str | None = None,
    policy: Any = None,
    max_new_tokens: int | None = None,
    limit: int | None = None,
    bootstrap_rounds: int = 2000,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Run the evaluation and write its files to `out_dir`; return the results dict.

    `aligner`: "default" (the built-in default aligner), a model path or hub id (both through
    `MetaAlignerRunnable`), or any Runnable/callable mapping `{"query", "response"}` to the
    aligned answer (a str, a message, or a dict whose `response` is the aligned answer).
    `judge`: "offline", "provider:model", a chat model or a Judge, for every objective;
    `scorers`: per-objective overrides (see `trainer.evaluate.judges.build_judges`). `policy`: a
    "provider:model" string or chat model that writes `response` for every row first.
    Judges read the objectives worded for `prompt_format`, else the aligner's own, else
    "hh-rlhf".
    """
    from trainer.evaluate.aligner import align, as_aligner
    from trainer.evaluate.judges import build_judges

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = load_rows(data, need_response=policy is None)[:limit]
    under_test = as_aligner(aligner, objectives, prompt_format, max_new_tokens)
    resolved = resolve(list(objectives), prompt_format or under_test.prompt_format or "hh-rlhf")
    judges = build_judges(resolved, judge, scorers)
    with _progress(progress) as bar:
        if policy is not None:
            rows = generate_responses(rows, policy, out / "responses.jsonl", bar)
        items = align(rows, under_test, out / "aligned.jsonl", bar)
        judgements = judge_items(items, resolved, judges, out / "judgements.jsonl", bar)
    settings = {
        "data": str(data) if isinstance(data, (str, Path)) else "<in memory>",
        "items": len(items),
        "with_golden": sum(bool(i.get("golden")) for i in items),
        "aligner": under_test.name,
        "objectives": [o.key for o in resolved],
        "descriptions": {o.key: o.description for o in resolved},
        "judges": {k: j.name for k, j in judges.items()},
        "bootstrap_rounds": bootstrap_rounds,
        "seed": seed,
    }
    results = aggregate(items, judgements, resolved, judges, settings, bootstrap_rounds, seed)
    from trainer.evaluate.report import write_markdown, write_plot

    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results, out / "report.md")
    write_plot(results, out / "winrates.png")
    return results


def load_rows(
    data: str | Path | Sequence[Mapping[str, Any]], need_response: bool = True
) -> list[dict]:
    """TEST rows from a JSONL path or a list of dicts, checked; each gains a stable `item` id.

    Written rewrite items (`examples/eval/heldout/`) read as rows too: `answer` is the response
    and `rewrite` the golden one.
    """
    if isinstance(data, (str, Path)):
        path = Path(data)
        if not path.is_file():
            raise FileNotFoundError(f"`data` is {str(data)!r}, which is not a file; pass a JSONL.")
        raw = read_jsonl(path)
    else:
        raw = [dict(r) for r in data]
    rows = []
    for n, row in enumerate(raw, 1):
        if "answer" in row and "response" not in row:
            row = {**row, "response": row["answer"], "golden": row.get("rewrite")}
        fields = ("query", "response") if need_response else ("query",)
        for name in fields:
            if not isinstance(row.get(name), str) or not row[name].strip():
                raise ValueError(
                    f"TEST row {n} has `{name}`={row.get(name)!r}; every row needs a non-empty "
                    f"string `{name}` (rows are {{\"query\", \"response\", \"golden\"?}}; "
                    "leave out `response` only with `policy`)."
                )
        item = ledger.stable_hash(row.get("query"), row.get("response"), row.get("golden"))
        rows.append({**row, "item": item})
    if not rows:
        raise ValueError(f"`data` {data!r} has no rows; pass at least one TEST row.")
    return rows


def generate_responses(rows: list[dict], policy: Any, cache: Path, bar: Any) -> list[dict]:
    """Fill `response` of every row with the policy chat model's answer to `query` (cached)."""
    if isinstance(policy, str):
        from langchain.chat_models import init_chat_model

        name, policy = policy, init_chat_model(policy, temperature=0)
    else:
        name = getattr(policy, "model_name", None) or type(policy).__name__
    done = ledger.read(cache)
    task = bar.add_task("policy", total=len(rows))
    out = []
    for row in rows:
        key = ledger.stable_hash(row["query"], name)
        if key not in done:
            reply = policy.invoke(row["query"])
            done[key] = {"key": key, "policy": name, "query": row["query"],
                         "response": str(getattr(reply, "content", reply))}
            ledger.append(cache, done[key])
        response = done[key]["response"]
        item = ledger.stable_hash(row["query"], response, row.get("golden"))
        out.append({**row, "response": response, "item": item})
        bar.advance(task)
    return out


def judge_items(
    items: list[dict], objectives: Sequence[Objective], judges: Mapping[str, Any], cache: Path,
    bar: Any,
) -> dict[str, dict]:
    """Judgement records by key for every (item, objective, comparison); judged ones are reused.

    Identical texts are a tie without asking the judge.
    """
    from trainer.evaluate.judges import Task

    done = ledger.read(cache)
    task_bar = bar.add_task("judging", total=len(items) * len(objectives))
    for item in items:
        for objective in objectives:
            judge = judges[objective.key]
            pending = []
            for comparison, xf, yf in COMPARISONS:
                x, y = item.get(xf), item.get(yf)
                if not y:
                    continue
                key = judgement_key(item["item"], objective, judge.name, comparison, x, y)
                if key in done:
                    continue
                record = {"key": key, "item": item["item"], "objective": objective.key,
                          "judge": judge.name, "comparison": comparison}
                if x.strip() == y.strip():
                    done[key] = {**record, "outcome": "tie", "identical": True}
                    ledger.append(cache, done[key])
                else:
                    pending.append((record, Task(item["query"], objective, x, y)))
            if pending:
                for (record, _), verdict in zip(pending, judge.judge([t for _, t in pending])):
                    done[record["key"]] = {**record, "outcome": verdict.outcome, **verdict.detail}
                    ledger.append(cache, done[record["key"]])
            bar.advance(task_bar)
    return done


def judgement_key(
    item: str, objective: Objective, judge: str, comparison: str, x: str, y: str
) -> str:
    """Stable hash of what a judgement depends on: item, objective, judge, comparison, texts."""
    return ledger.stable_hash(item, objective.key, objective.description, judge, comparison, x, y)


def aggregate(
    items: list[dict], judgements: Mapping[str, dict], objectives: Sequence[Objective],
    judges: Mapping[str, Any], settings: dict, rounds: int, seed: int,
) -> dict:
    """The results dict: per objective and comparison, then the do-no-harm figures."""
    from trainer.evaluate.metrics import (
        Resampling, edit_distance, gain, harm_flags, loss_flags, mean_with_ci, speed, summarize,
    )

    resampling = Resampling(rounds, seed)
    per_objective, vs_original = {}, {}
    for objective in objectives:
        judge = judges[objective.key]
        outcomes = {}
        for comparison, xf, yf in COMPARISONS:
            column = []
            for item in items:
                if not item.get(yf):
                    column.append(None)
                    continue
                key = judgement_key(item["item"], objective, judge.name, comparison,
                                    item[xf], item[yf])
                column.append(judgements[key]["outcome"])
            if any(o is not None for o in column):
                outcomes[comparison] = column
        block = {"judge": judge.name,
                 "comparisons": {c: summarize(o, resampling) for c, o in outcomes.items()}}
        if "aligned_vs_golden" in outcomes:
            block["gain_vs_golden"] = gain(
                outcomes["aligned_vs_golden"], outcomes["original_vs_golden"], resampling
            )
        per_objective[objective.key] = block
        vs_original[objective.key] = outcomes["aligned_vs_original"]
    sources = {i["tokens_source"] for i in items}
    do_no_harm = {
        "harm": mean_with_ci(harm_flags(vs_original), resampling),
        "any_loss": mean_with_ci(loss_flags(vs_original), resampling),
        "unchanged": mean_with_ci(
            [float(i["aligned"].strip() == i["response"].strip()) for i in items], resampling
        ),
        "edit_distance": mean_with_ci([edit_distance(i["response"], i["aligned"]) for i in items],
                                      resampling),
        "fallback": mean_with_ci(
            [float(i["metadata"].get("fallback_reason") is not None) if i["metadata"] else None
             for i in items], resampling),
        "speed": {**speed([i["latency_s"] for i in items], [i["tokens"] for i in items]),
                  "tokens_source": "/".join(sorted(sources))},
    }
    return {"settings": settings, "objectives": per_objective, "do_no_harm": do_no_harm}


class _NoBar:
    def add_task(self, *args: Any, **kwargs: Any) -> int:
        return 0

    def advance(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def _progress(enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
