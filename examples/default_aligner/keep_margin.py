"""Choose the default aligner's `keep_margin` on the validation split: score each rewrite it made
against a copy of the original, then count what each margin would give back.

    python examples/default_aligner/keep_margin.py JUDGED_DIR [--model GGUF] [--out FILE]

JUDGED_DIR is a `validate.py` run with the test off (its `items.jsonl`: each item's rewrite and
its chrF outcome against the gold rewrite): `--shipped` for the built-in default, or a trained
run's `validation/` with `--model` naming the GGUF that made it. For every item the aligner
changed, that aligner (the built-in default unless `--model`) scores log P(original) and
log P(rewrite) after the item's prompt (`backend.score`); a margin m gives back the original when
log P(original) - log P(rewrite) < m. Per margin: rewrites given back, and among them chrF wins
lost, chrF losses removed, ties and clean answers restored; then the whole split as it would be
judged with that margin (answers changed, clean answers kept, chrF and checks win / loss pooled
over the objectives each item fixes): the trade-off a user picks from. Writes FILE (default:
keep-margin.json beside this script).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from trainer.evaluate.rewrites import CHRF_MARGIN, judge_item, offline_scorers, outcome
from trainer.jsonl import read_jsonl
from trainer.recipe import load_recipe

HERE = Path(__file__).resolve().parent
MARGINS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0, 30.0, 40.0)


def outcome_of(item: dict) -> str:
    """`clean` for a clean answer the aligner changed, else the rewrite's chrF outcome."""
    return "clean" if item["kind"] == "clean" else outcome(item["chrf_delta"], CHRF_MARGIN)


def corpus_rows() -> dict[str, dict]:
    """The validation split's corpus rows by id."""
    from validate import validation_items

    return {i.row["id"]: i.row for i in validation_items(load_recipe(HERE / "recipe.yaml").data)}


def scored(judged: list[dict], rows: dict[str, dict], model: str | None = None) -> list[dict]:
    """Every changed, not fallen-back item of the run, with the aligner's two scores."""
    from metaaligner_chain import MetaAlignerRunnable
    from metaaligner_chain.coerce import coerce
    from trainer.evaluate.rewrites import runnable_input

    runnable = MetaAlignerRunnable(objectives=["helpfulness"], keep_margin=None,
                                   **({"model": model} if model else {}))
    backend, prompt_format = runnable.load_backend(), runnable._prompt_format()
    found = []
    for item in judged:
        if item["aligned"] == item["answer"] or item["fallback_reason"]:
            continue
        request = coerce(runnable_input(rows[item["id"]]))
        copy, rewrite = backend.score(runnable._prompt(request, prompt_format),
                                      [request.quoted, item["aligned"]])
        found.append({"id": item["id"], "outcome": outcome_of(item), "chrf_delta": item.get("chrf_delta"),
                      "copy": copy, "rewrite": rewrite, "gap": copy - rewrite})
        print(f"scored {len(found)}: {item['id']} gap {copy - rewrite:.2f}", flush=True)
    return found


def sweep(items: list[dict], judged: list[dict], rows: dict[str, dict]) -> list[dict]:
    """Per margin: what it gives back among the changed items, and the whole split with it."""
    from compare import pooled

    gaps = {i["id"]: i["gap"] for i in items}
    scorers, verdicts = offline_scorers(), {}

    def judge(row: dict) -> dict:  # each (item, text) judged once over all margins
        key = row["id"], row["aligned"]
        if key not in verdicts:
            verdicts[key] = judge_item(rows[row["id"]], row["aligned"], scorers)
        return verdicts[key]

    table = []
    for margin in MARGINS:
        given_back = [i for i in items if i["gap"] < margin]
        counts = {k: sum(i["outcome"] == k for i in given_back) for k in ("win", "loss", "tie", "clean")}
        at_margin = [{**item, "aligned": item["answer"], "similarity": 1.0}
                     if gaps.get(item["id"], float("inf")) < margin else item for item in judged]
        chrf, checks, _, kept, _ = pooled(at_margin, judge)
        split = {"changed": sum(i["aligned"].strip() != i["answer"].strip() for i in at_margin),
                 "clean_kept": kept,
                 "chrf": [chrf["win"], chrf["tie"], chrf["loss"]],
                 "checks": [checks["win"], checks["tie"], checks["loss"]]}
        table.append({"margin": margin, "given_back": len(given_back), **counts, "split": split})
    return table


def _rate(win_tie_loss: list[int]) -> str:
    win, _, loss = win_tie_loss
    return f"{win} / {loss} ({win / (win + loss):.0%})" if win + loss else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("judged", type=Path)
    parser.add_argument("--model", help="the GGUF that made JUDGED_DIR (default: the built-in default)")
    parser.add_argument("--out", type=Path, default=HERE / "keep-margin.json")
    args = parser.parse_args()
    rows, judged = corpus_rows(), list(read_jsonl(args.judged / "items.jsonl"))
    items = scored(judged, rows, args.model)
    totals = {k: sum(i["outcome"] == k for i in items) for k in ("win", "loss", "tie", "clean")}
    table = sweep(items, judged, rows)
    clean = sum(item["kind"] == "clean" for item in judged)
    print(f"changed items: {len(items)} {totals}")
    print("| margin | given back | wins lost | losses removed | ties | clean restored "
          f"| answers changed of {len(judged)} | clean kept of {clean} | chrF win / loss "
          "| checks win / loss |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in table:
        split = row["split"]
        print(f"| {row['margin']} | {row['given_back']} | {row['win']} | {row['loss']} | {row['tie']} "
              f"| {row['clean']} | {split['changed']} | {split['clean_kept']} | {_rate(split['chrf'])} "
              f"| {_rate(split['checks'])} |")
    args.out.write_text(json.dumps({"judged": str(args.judged), "model": args.model, "changed": totals,
                                    "sweep": table, "items": items}, indent=1) + "\n")


if __name__ == "__main__":
    main()
