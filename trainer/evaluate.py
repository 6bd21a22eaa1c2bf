"""Evaluate an aligner per objective: align each test response, judge aligned vs original (and vs
golden), then write `results.json`, `report.md`, `winrates.png` and per-item JSONL to a folder.

TEST rows are JSONL `{"query", "response", "golden"?}` (`response` may be left out with a
`policy`). Resumable: aligned answers and judgements already in the folder are reused, keyed by a
stable hash of the item, the objective (with its description), the judge and the texts compared.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from metaaligner_chain.objectives import Objective, resolve

#: Comparisons judged per objective, as (name, x field, y field); golden ones need a golden.
COMPARISONS = (
    ("aligned_vs_original", "aligned", "response"),
    ("aligned_vs_golden", "aligned", "golden"),
    ("original_vs_golden", "response", "golden"),
)
_TOKEN_KEYS = ("completion_tokens", "generated_tokens", "output_tokens", "new_tokens", "tokens")


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
    `scorers`: per-objective overrides (see `trainer.judges.build_judges`). `policy`: a
    "provider:model" string or chat model that writes `response` for every row first.
    Judge descriptions come from `prompt_format` (default "hh-rlhf").
    """
    from trainer.judges import build_judges

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = load_rows(data, need_response=policy is None)[:limit]
    resolved = resolve(list(objectives), prompt_format or "hh-rlhf")
    judges = build_judges(resolved, judge, scorers)
    with _progress(progress) as bar:
        if policy is not None:
            rows = generate_responses(rows, policy, out / "responses.jsonl", bar)
        runner, aligner_name = _as_aligner(aligner, objectives, prompt_format, max_new_tokens)
        items = align(rows, runner, aligner_name, out / "aligned.jsonl", bar)
        judgements = judge_items(items, resolved, judges, out / "judgements.jsonl", bar)
    settings = {
        "data": str(data) if isinstance(data, (str, Path)) else "<in memory>",
        "items": len(items),
        "with_golden": sum(bool(i.get("golden")) for i in items),
        "aligner": aligner_name,
        "objectives": [o.key for o in resolved],
        "descriptions": {o.key: o.description for o in resolved},
        "judges": {k: j.name for k, j in judges.items()},
        "bootstrap_rounds": bootstrap_rounds,
        "seed": seed,
    }
    results = aggregate(items, judgements, resolved, judges, settings, bootstrap_rounds, seed)
    from trainer.report import write_markdown, write_plot

    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results, out / "report.md")
    write_plot(results, out / "winrates.png")
    return results


def load_rows(
    data: str | Path | Sequence[Mapping[str, Any]], need_response: bool = True
) -> list[dict]:
    """TEST rows from a JSONL path or a list of dicts, checked; each gains a stable `item` id."""
    if isinstance(data, (str, Path)):
        path = Path(data)
        if not path.is_file():
            raise FileNotFoundError(f"`data` is {str(data)!r}, which is not a file; pass a JSONL.")
        raw = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    else:
        raw = [dict(r) for r in data]
    rows = []
    for n, row in enumerate(raw, 1):
        fields = ("query", "response") if need_response else ("query",)
        for name in fields:
            if not isinstance(row.get(name), str) or not row[name].strip():
                raise ValueError(
                    f"TEST row {n} has `{name}`={row.get(name)!r}; every row needs a non-empty "
                    f"string `{name}` (rows are {{\"query\", \"response\", \"golden\"?}}; "
                    "leave out `response` only with `policy`)."
                )
        rows.append({**row, "item": _hash(row.get("query"), row.get("response"), row.get("golden"))})
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
    done = _read_jsonl(cache)
    todo = [r for r in rows if _hash(r["query"], name) not in done]
    task = bar.add_task("policy", total=len(todo))
    for row in todo:
        reply = policy.invoke(row["query"])
        record = {"key": _hash(row["query"], name), "policy": name, "query": row["query"],
                  "response": str(getattr(reply, "content", reply))}
        _append(cache, record)
        done[record["key"]] = record
        bar.advance(task)
    return [
        {**r, "response": done[_hash(r["query"], name)]["response"],
         "item": _hash(r["query"], done[_hash(r["query"], name)]["response"], r.get("golden"))}
        for r in rows
    ]


def align(rows: list[dict], runner: Callable, name: str, cache: Path, bar: Any) -> list[dict]:
    """Aligned answer, latency and output tokens per row; rows already in `cache` are reused."""
    done = _read_jsonl(cache)
    task = bar.add_task("aligning", total=len(rows))
    items = []
    for row in rows:
        key = _hash(row["item"], name)
        if key not in done:
            start = time.perf_counter()
            result = runner({"query": row["query"], "response": row["response"]})
            latency = time.perf_counter() - start
            aligned, tokens, source, meta = _aligned_text(result)
            done[key] = {"key": key, "item": row["item"], "aligner": name, "aligned": aligned,
                         "latency_s": latency, "tokens": tokens, "tokens_source": source,
                         "fallback_reason": meta.get("fallback_reason"), "metadata": meta}
            _append(cache, done[key])
        rec = done[key]
        items.append({**row, **{k: rec[k] for k in
                                ("aligned", "latency_s", "tokens", "tokens_source", "metadata")}})
        bar.advance(task)
    return items


def judge_items(
    items: list[dict], objectives: Sequence[Objective], judges: Mapping[str, Any], cache: Path,
    bar: Any,
) -> dict[str, dict]:
    """Judgement records by key for every (item, objective, comparison); judged ones are reused.

    Identical texts are a tie without asking the judge.
    """
    from trainer.judges import Task

    done = _read_jsonl(cache)
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
                    _append(cache, done[key])
                else:
                    pending.append((record, Task(item["query"], objective, x, y)))
            if pending:
                for (record, _), verdict in zip(pending, judge.judge([t for _, t in pending])):
                    done[record["key"]] = {**record, "outcome": verdict.outcome, **verdict.detail}
                    _append(cache, done[record["key"]])
            bar.advance(task_bar)
    return done


def judgement_key(
    item: str, objective: Objective, judge: str, comparison: str, x: str, y: str
) -> str:
    """Stable hash of what a judgement depends on: item, objective, judge, comparison, texts."""
    return _hash(item, objective.key, objective.description, judge, comparison, x, y)


def aggregate(
    items: list[dict], judgements: Mapping[str, dict], objectives: Sequence[Objective],
    judges: Mapping[str, Any], settings: dict, rounds: int, seed: int,
) -> dict:
    """The results dict: per objective and comparison, then the do-no-harm figures."""
    from trainer.metrics import (
        edit_distance, gain, harm_flags, mean_with_ci, resample_indices, speed, summarize,
    )

    idx = resample_indices(len(items), rounds, seed)
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
                 "comparisons": {c: summarize(o, idx) for c, o in outcomes.items()}}
        if "aligned_vs_golden" in outcomes:
            block["gain_vs_golden"] = gain(
                outcomes["aligned_vs_golden"], outcomes["original_vs_golden"], idx
            )
        per_objective[objective.key] = block
        vs_original[objective.key] = outcomes["aligned_vs_original"]
    sources = {i["tokens_source"] for i in items}
    do_no_harm = {
        "harm": mean_with_ci(harm_flags(vs_original), idx),
        "unchanged": mean_with_ci(
            [float(i["aligned"].strip() == i["response"].strip()) for i in items], idx
        ),
        "edit_distance": mean_with_ci([edit_distance(i["response"], i["aligned"]) for i in items],
                                      idx),
        "fallback": mean_with_ci(
            [float(i["metadata"].get("fallback_reason") is not None) if i["metadata"] else None
             for i in items], idx),
        "speed": {**speed([i["latency_s"] for i in items], [i["tokens"] for i in items]),
                  "tokens_source": "/".join(sorted(sources))},
    }
    return {"settings": settings, "objectives": per_objective, "do_no_harm": do_no_harm}


def _as_aligner(
    aligner: Any, objectives: Sequence[Any], prompt_format: str | None,
    max_new_tokens: int | None,
) -> tuple[Callable[[dict], Any], str]:
    """A one-row callable and a stable name for the resume key."""
    if aligner is None or isinstance(aligner, (str, Path)):
        from metaaligner_chain import MetaAlignerRunnable

        model = None if aligner in (None, "default") else str(aligner)
        kwargs = {"max_new_tokens": max_new_tokens} if max_new_tokens else {}
        runnable = MetaAlignerRunnable(
            objectives=list(objectives), model=model, prompt_format=prompt_format, **kwargs
        )
        name = f"{model or 'default'}|{prompt_format}|{max_new_tokens}|" + ",".join(
            str(o) for o in objectives
        )
        from langchain_core.messages import AIMessage

        def run(row: dict) -> Any:  # a message response brings back the aligner's metadata
            return runnable.invoke({"query": row["query"], "response": AIMessage(row["response"])})

        return run, name
    name = getattr(aligner, "name", None) or type(aligner).__name__
    if hasattr(aligner, "invoke"):
        return aligner.invoke, str(name)
    if callable(aligner):
        return aligner, getattr(aligner, "__name__", str(name))
    raise TypeError(
        f"`aligner` is a {type(aligner).__name__}; pass 'default', a model path/hub id, a "
        "Runnable or a callable taking {'query', 'response'}."
    )


def _aligned_text(result: Any) -> tuple[str, int, str, dict]:
    """(aligned answer, output tokens, where the token count came from, aligner metadata)."""
    value = result["response"] if isinstance(result, Mapping) else result
    meta = dict((getattr(value, "response_metadata", None) or {}).get("metaaligner") or {})
    text = str(getattr(value, "content", value))
    meta.pop("original", None)
    for key in _TOKEN_KEYS:
        if isinstance(meta.get(key), int):
            return text, meta[key], "aligner", meta
    return text, len(re.findall(r"\w+|[^\w\s]", text)), "approx (words+punctuation)", meta


def _hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()[:20]


def _read_jsonl(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    records = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {r["key"]: r for r in records}


def _append(path: Path, record: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")


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
