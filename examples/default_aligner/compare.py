"""Two aligners judged on the same validation split, on all of it and on the items neither trained on.

A new corpus round re-draws nothing for the items already in validation, but the previous
default trained on the items that were in its own training split, which favours it on those. So
the ship decision reads the items that neither adapter saw: those in the previous run's
validation split, and those of the parts written since.

    python examples/default_aligner/compare.py NEW_DIR OLD_DIR --old-split OLD_VALIDATION_DIR \\
        --new-parts r8a r8b r8c r8d [--json OUT]

NEW_DIR, OLD_DIR: `validate.py` output folders on the current split (`items.jsonl`, aligned
records); OLD_VALIDATION_DIR: the previous run's own validation folder (its `items.jsonl` names
the items it held out). Prints pooled chrF and checks win / tie / loss (per objective needing the
fix), clean answers kept and fallbacks, per column.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from trainer.evaluate.rewrites import KEPT_SIMILARITY, judge_item, offline_scorers
from trainer.jsonl import read_jsonl
from trainer.recipe import load_recipe

HERE = Path(__file__).resolve().parent


def _rows(folder: Path) -> dict[str, dict]:
    return {row["id"]: row for row in read_jsonl(folder / "items.jsonl")}


def pooled(rows: list[dict], judge: Callable[[dict], dict]) -> tuple[Counter, Counter, int, int, int]:
    """chrF and checks outcomes pooled over the objectives each item fixes (`judge(row)` judges a
    row's aligned answer, `judge_item`'s result), then clean answers, clean kept, fallbacks."""
    chrf, checks = Counter(), Counter()
    clean = kept = fallbacks = 0
    for row in rows:
        fallbacks += bool(row.get("fallback_reason"))
        if row["kind"] == "clean":
            clean += 1
            kept += row["similarity"] >= KEPT_SIMILARITY
            continue
        for verdicts in judge(row)["outcomes"].values():
            chrf[verdicts["chrf"]] += 1
            checks[verdicts["independent"]] += 1
    return chrf, checks, clean, kept, fallbacks


def tally(rows: list[dict], corpus: dict[str, dict], scorers: dict) -> dict:
    """Pooled chrF and checks outcomes over the objectives each item fixes, clean kept, fallbacks."""
    chrf, checks, clean, kept, fallbacks = pooled(
        rows, lambda row: judge_item(corpus[row["id"]], row["aligned"], scorers))
    line = lambda c: f"{c['win']} / {c['tie']} / {c['loss']}"  # noqa: E731
    return {"items": len(rows), "chrf": line(chrf), "checks": line(checks),
            "clean": f"{kept} / {clean}", "fallbacks": fallbacks}


def main() -> None:
    from validate import validation_items

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("new", type=Path)
    parser.add_argument("old", type=Path)
    parser.add_argument("--old-split", type=Path, required=True)
    parser.add_argument("--new-parts", nargs="*", default=[])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    corpus = {i.row["id"]: i.row for i in validation_items(load_recipe(HERE / "recipe.yaml").data)}
    new, old = _rows(args.new), _rows(args.old)
    if set(new) != set(old) or set(new) != set(corpus):
        raise SystemExit("the two folders must hold the current validation split's items; "
                         "run validate.py on both aligners with the current corpus")
    held_by_old = set(_rows(args.old_split))
    unseen = sorted(i for i in new if i in held_by_old or i.split("-")[0] in args.new_parts)
    scorers = offline_scorers()
    table = {
        "new, all": tally(list(new.values()), corpus, scorers),
        "old, all": tally(list(old.values()), corpus, scorers),
        "new, unseen by both": tally([new[i] for i in unseen], corpus, scorers),
        "old, unseen by both": tally([old[i] for i in unseen], corpus, scorers),
    }
    print("| | items | chrF win / tie / loss | checks win / tie / loss | clean kept | fallbacks |")
    print("|---|---|---|---|---|---|")
    for name, t in table.items():
        print(f"| {name} | {t['items']} | {t['chrf']} | {t['checks']} | {t['clean']} | {t['fallbacks']} |")
    if args.json:
        args.json.write_text(json.dumps({"unseen_ids": unseen, "table": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
