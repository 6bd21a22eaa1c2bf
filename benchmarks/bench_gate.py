"""How often the gate's whole-rewrite checks turn down good rewrites, and how many bad ones they catch.

Reads an evaluation folder written by `ma-train eval` / `examples/default_aligner/validate.py`
(`items.jsonl`: each item's original, the aligned answer and how the judges scored it;
`aligned.jsonl`: the finish reason) and applies `metaaligner_chain.judge.judge` to every rewrite
that the gate of the run let through and that changed the answer. No model runs, so the figures
are exact and cheap to rerun.

A rewrite is *good* when some objective's judge (chrF against the gold rewrite, or the per-item
checks) scored a win and none a loss, and no required phrase was lost; *bad* when a judge scored
a loss or a required phrase was lost; *neutral* otherwise (ties only). Thresholds were chosen on
the training corpus's gold rewrites and the validation split (`runs/.../validation`); the held-out
folder is where the target (false rejections of good rewrites <= 2%) is reported.

    python -m benchmarks.bench_gate examples/eval/default-aligner [runs/default-aligner-e2/validation]
Results: benchmarks/results/gate.json. Without folders (as `python -m benchmarks` runs it) it
measures `DEFAULT_FOLDERS`, the ones the recorded results came from; a default folder missing
here (both are written by an evaluation, not shipped) keeps its recorded figures.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from metaaligner_chain import judge
from metaaligner_chain.objectives import resolve
from metaaligner_chain.prompt import prompt_prefix
from trainer.evaluate.rewrites import objective_specs

RESULTS = Path(__file__).resolve().parent / "results" / "gate.json"
#: The evaluation folders the recorded results were measured on: the default aligner's held-out
#: run and its training run's validation split.
DEFAULT_FOLDERS = (Path("examples/eval/default-aligner"), Path("runs/default-aligner-e2/validation"))
#: What `measure` reads in a folder.
NEEDED = ("items.jsonl", "aligned.jsonl")


def _read(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def grade(item: dict) -> str:
    """good / bad / neutral, from the judges' outcomes recorded with the item."""
    outcomes = [o for verdicts in item.get("outcomes", {}).values() for o in verdicts.values()]
    if item.get("lost_keep") or "loss" in outcomes:
        return "bad"
    return "good" if "win" in outcomes else "neutral"


def measure(folder: Path, prompt_format: str = "hh-rlhf") -> dict:
    finish = {r["id"]: (r.get("metadata") or {}).get("finish_reason") for r in _read(folder / "aligned.jsonl")}
    counts: dict[str, Counter] = {g: Counter() for g in ("good", "bad", "neutral")}
    reasons: Counter = Counter()
    examples = []
    for item in _read(folder / "items.jsonl"):
        original, text = item["answer"], item["aligned"]
        if item.get("fallback_reason") or text is None or text.strip() == original.strip():
            continue
        objectives = resolve(objective_specs(item["objectives"]), prompt_format)
        reason = judge.judge(original, text, finish_reason=finish.get(item["id"]),
                            scaffold=prompt_prefix(objectives, prompt_format=prompt_format),
                            objectives=objectives)
        group = grade(item)
        counts[group]["rewrites"] += 1
        if reason:
            counts[group]["rejected"] += 1
            kind = reason.split(" (")[0]
            reasons[kind] += 1
            examples.append({"id": item["id"], "grade": group, "reason": reason, "rewrite": text[:200]})
    table = {g: {**c, "rejected_share": round(c["rejected"] / c["rewrites"], 4) if c["rewrites"] else None}
             for g, c in counts.items()}
    return {"folder": str(folder), "by_grade": table, "reasons": dict(reasons), "rejected": examples,
            "retry": retry_effect(_read(folder / "items.jsonl"))}


def retry_effect(items: list[dict]) -> dict | None:
    """What the user got where the gate turned the first rewrite down and it was decoded again
    (`retry_loops`; items record `retried`, the first rejection's reason). A rewrite the user
    loses to the gate is a final fallback, so fallbacks over calls bound the false rejections
    from above: the rejected text is not kept, so it is counted as if it were good."""
    if not any("retried" in item for item in items):
        return None  # judged before the retry existed
    retried = [item for item in items if item.get("retried")]
    final = Counter("fallback" if item.get("fallback_reason") else grade(item) for item in retried)
    fallbacks = sum(bool(item.get("fallback_reason")) for item in items)
    return {"calls": len(items), "first_rewrite_turned_down": len(retried),
            "after_retry": dict(final), "fallbacks": fallbacks,
            "good_rewrites_lost_at_most": round(fallbacks / len(items), 4) if items else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", type=Path,
                        help=f"evaluation folders (default: {', '.join(map(str, DEFAULT_FOLDERS))})")
    args = parser.parse_args()
    for folder in args.folders:
        if missing := _missing(folder):
            parser.error(f"{folder} has no {', '.join(missing)}: pass a folder written by `ma-train eval` "
                         "or examples/default_aligner/validate.py.")
    results = {"thresholds": {"long_answer": judge.LONG_ANSWER, "min_kept": judge.MIN_KEPT,
                              "min_kept_brief": judge.MIN_KEPT_BRIEF, "loop_share": judge.LOOP_SHARE,
                              "loop_times": judge.LOOP_TIMES,
                              "scaffold_run": judge.SCAFFOLD_RUN},
               "runs": [measure(folder) for folder in args.folders] if args.folders else _default_runs()}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    for run in results["runs"]:
        print(run["folder"])
        for group, c in run["by_grade"].items():
            print(f"  {group:8} rewrites {c.get('rewrites', 0):4}  rejected {c.get('rejected', 0):3}  "
                  f"({c['rejected_share']})")
        print("  reasons:", run["reasons"])
        if run.get("retry"):
            print("  with the retry:", run["retry"])


def _missing(folder: Path) -> list[str]:
    return [name for name in NEEDED if not (folder / name).is_file()]


def _default_runs() -> list[dict]:
    """`DEFAULT_FOLDERS` measured where they are here, else their recorded runs kept."""
    recorded = json.loads(RESULTS.read_text())["runs"] if RESULTS.exists() else []
    recorded_by_folder = {run["folder"]: run for run in recorded}
    runs = []
    for folder in DEFAULT_FOLDERS:
        if missing := _missing(folder):
            print(f"{folder}: no {', '.join(missing)} here; its recorded figures are kept "
                  "(rerun its evaluation to measure it again)")
            if str(folder) in recorded_by_folder:
                runs.append(recorded_by_folder[str(folder)])
        else:
            runs.append(measure(folder))
    return runs


if __name__ == "__main__":
    main()
