"""Choose the default aligner's `keep_margin` on the validation split: score each rewrite it made
against a copy of the original, then count what each margin would give back.

    python examples/default_aligner/keep_margin.py JUDGED_DIR [--out FILE]

JUDGED_DIR is a `validate.py --shipped` run of the default with the test off (its `items.jsonl`:
each item's rewrite and its chrF outcome against the gold rewrite). For every item the aligner
changed, the built-in default scores log P(original) and log P(rewrite) after the item's prompt
(`backend.score`); a margin m gives back the original when log P(original) - log P(rewrite) < m.
Per margin: rewrites given back, and among them chrF wins lost, chrF losses removed, ties and
clean answers restored. Writes FILE (default: keep-margin.json beside this script).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from trainer.evaluate.rewrites import CHRF_MARGIN, outcome
from trainer.jsonl import read_jsonl
from trainer.recipe import load_recipe

HERE = Path(__file__).resolve().parent
MARGINS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 12.0)


def outcome_of(item: dict) -> str:
    """`clean` for a clean answer the aligner changed, else the rewrite's chrF outcome."""
    return "clean" if item["kind"] == "clean" else outcome(item["chrf_delta"], CHRF_MARGIN)


def scored(judged_dir: Path) -> list[dict]:
    """Every changed, not fallen-back item of the run, with the default's two scores."""
    from metaaligner_chain import MetaAlignerRunnable
    from metaaligner_chain.coerce import coerce
    from trainer.evaluate.rewrites import runnable_input
    from validate import validation_items

    rows = {i.row["id"]: i.row for i in validation_items(load_recipe(HERE / "recipe.yaml").data)}
    runnable = MetaAlignerRunnable(objectives=["helpfulness"], keep_margin=None)
    backend, prompt_format = runnable.load_backend(), runnable._prompt_format()
    found = []
    for item in read_jsonl(judged_dir / "items.jsonl"):
        if item["aligned"] == item["answer"] or item["fallback_reason"]:
            continue
        request = coerce(runnable_input(rows[item["id"]]))
        copy, rewrite = backend.score(runnable._prompt(request, prompt_format),
                                      [request.quoted, item["aligned"]])
        found.append({"id": item["id"], "outcome": outcome_of(item), "chrf_delta": item.get("chrf_delta"),
                      "copy": copy, "rewrite": rewrite, "gap": copy - rewrite})
        print(f"scored {len(found)}: {item['id']} gap {copy - rewrite:.2f}", flush=True)
    return found


def sweep(items: list[dict]) -> list[dict]:
    table = []
    for margin in MARGINS:
        given_back = [i for i in items if i["gap"] < margin]
        counts = {k: sum(i["outcome"] == k for i in given_back) for k in ("win", "loss", "tie", "clean")}
        table.append({"margin": margin, "given_back": len(given_back), **counts})
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("judged", type=Path)
    parser.add_argument("--out", type=Path, default=HERE / "keep-margin.json")
    args = parser.parse_args()
    items = scored(args.judged)
    totals = {k: sum(i["outcome"] == k for i in items) for k in ("win", "loss", "tie", "clean")}
    table = sweep(items)
    print(f"changed items: {len(items)} {totals}")
    print("| margin | given back | wins lost | losses removed | ties | clean restored |")
    print("|---|---|---|---|---|---|")
    for row in table:
        print(f"| {row['margin']} | {row['given_back']} | {row['win']} | {row['loss']} | {row['tie']} "
              f"| {row['clean']} |")
    args.out.write_text(json.dumps({"judged": str(args.judged), "changed": totals, "sweep": table,
                                    "items": items}, indent=1) + "\n")


if __name__ == "__main__":
    main()
