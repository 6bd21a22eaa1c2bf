"""Choose the default aligner's `keep_margin` on validation: score each rewrite it made against a
copy of the original, then count what each margin would give back; with `--per-objective`, choose
a margin per objective by a rule fixed before the figures were read (below).

    python examples/default_aligner/keep_margin.py JUDGED_DIR[=ITEMS] ... [--model GGUF]
                                                   [--per-objective] [--out FILE]

Each JUDGED_DIR is a `validate.py` run with the test off (its `items.jsonl`: each item's rewrite
and its chrF outcome against the gold rewrite): `--shipped --keep-margin off` for the built-in
default, or a trained run's `validation/` with `--model` naming the GGUF that made it. Its items
come from the recipe's validation split, or from ITEMS (the `--items` the run was given, e.g.
`runs/validation-topics-shipped-keep-off=examples/default_aligner/validation-topics`). For every
item the aligner changed, that aligner (the built-in default unless `--model`) scores
log P(original) and log P(rewrite) after the item's prompt (`backend.score`; kept in
JUDGED_DIR/keep-scores.jsonl, so a rerun scores only what is new); a margin m gives back the
original when log P(original) - log P(rewrite) < m. Per margin: rewrites given back, and among
them chrF wins lost, chrF losses removed, ties and clean answers restored; then all the judged
items as they would be judged with that margin (answers changed, clean answers kept, chrF and
checks win / loss pooled over the objectives each item fixes, harm): the trade-off a user picks
from. Writes FILE (default: keep-margin.json beside this script).

`--per-objective`, the rule (written down before the topic-split set was run): a margin for each
trained objective and one for every other objective (`"*"`), each from MARGINS; a request uses the
smallest margin among its objectives (`gate.margin_for`, as the runnable does). Starting from the
shipped 1.5 everywhere, each key in turn (the six trained ones, then `"*"`) takes the margin that
maximizes, over all judged items, chrF (wins - losses) + checks (wins - losses) - clean answers
edited - harmed answers (`is_harm`), the smallest margin on a tie; three passes over the keys.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from trainer.evaluate.rewrites import CHRF_MARGIN, is_harm, judge_item, offline_scorers, outcome
from trainer.jsonl import read_jsonl
from trainer.recipe import load_recipe

HERE = Path(__file__).resolve().parent
MARGINS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0, 30.0, 40.0)
SHIPPED = 1.5  # the single margin the per-objective search starts from
PASSES = 3


def outcome_of(item: dict) -> str:
    """`clean` for a clean answer the aligner changed, else the rewrite's chrF outcome."""
    return "clean" if item["kind"] == "clean" else outcome(item["chrf_delta"], CHRF_MARGIN)


def corpus_rows(items: Path | None = None) -> dict[str, dict]:
    """Rows by id: the recipe's validation split, or the written set at `items`."""
    from validate import topic_items, validation_items

    found = topic_items(items) if items else validation_items(load_recipe(HERE / "recipe.yaml").data)
    return {i.row["id"]: i.row for i in found}


def scored(judged: list[dict], rows: dict[str, dict], cache: Path, model: str | None = None) -> list[dict]:
    """Every changed, not fallen-back item of the run, with the aligner's two scores (read from
    `cache` when this model already scored that rewrite; new scores are added to it)."""
    from metaaligner_chain import MetaAlignerRunnable
    from metaaligner_chain.coerce import coerce
    from trainer.evaluate.rewrites import runnable_input

    known = {(s["id"], s["aligned"], s["model"]): s for s in (read_jsonl(cache) if cache.exists() else [])}
    runnable = MetaAlignerRunnable(objectives=["helpfulness"], keep_margin=None,
                                   **({"model": model} if model else {}))
    backend = prompt_format = None
    found = []
    for item in judged:
        if item["aligned"] == item["answer"] or item["fallback_reason"]:
            continue
        key = item["id"], item["aligned"], model
        if key not in known:
            if backend is None:
                backend, prompt_format = runnable.load_backend(), runnable._prompt_format()
            request = coerce(runnable_input(rows[item["id"]]))
            copy, rewrite = backend.score(runnable._prompt(request, prompt_format),
                                          [request.quoted, item["aligned"]])
            known[key] = {"id": item["id"], "aligned": item["aligned"], "model": model,
                          "copy": copy, "rewrite": rewrite}
            with cache.open("a") as handle:
                handle.write(json.dumps(known[key], ensure_ascii=False) + "\n")
        copy, rewrite = known[key]["copy"], known[key]["rewrite"]
        found.append({"id": item["id"], "outcome": outcome_of(item), "chrf_delta": item.get("chrf_delta"),
                      "copy": copy, "rewrite": rewrite, "gap": copy - rewrite})
        print(f"scored {len(found)}: {item['id']} gap {copy - rewrite:.2f}", flush=True)
    return found


class Judged:
    """The judged items of one or more validation runs, re-judged as a margin rule would leave
    them (each (item, text) judged once over all the rules tried)."""

    def __init__(self, judged: list[dict], rows: dict[str, dict], items: list[dict]):
        self.judged, self.rows = judged, rows
        self.gaps = {i["id"]: i["gap"] for i in items}
        self.scorers, self.verdicts = offline_scorers(), {}

    def judge(self, row: dict) -> dict:
        key = row["id"], row["aligned"]
        if key not in self.verdicts:
            self.verdicts[key] = judge_item(self.rows[row["id"]], row["aligned"], self.scorers)
        return self.verdicts[key]

    def at(self, margin_of) -> list[dict]:
        """Every judged item, given back the original where its gap is under `margin_of(row)`."""
        return [{**item, "aligned": item["answer"], "similarity": 1.0}
                if self.gaps.get(item["id"], float("inf")) < margin_of(self.rows[item["id"]]) else item
                for item in self.judged]

    def split(self, margin_of) -> dict:
        """Answers changed, clean kept, chrF and checks win / tie / loss (pooled), harm."""
        return self.tally(self.at(margin_of))

    def tally(self, rows: list[dict]) -> dict:
        """`split`'s figures for judged rows as some rule left them."""
        from compare import pooled

        chrf, checks, _, kept, _ = pooled(rows, self.judge)
        return {"changed": sum(i["aligned"].strip() != i["answer"].strip() for i in rows),
                "clean_kept": kept,
                "chrf": [chrf["win"], chrf["tie"], chrf["loss"]],
                "checks": [checks["win"], checks["tie"], checks["loss"]],
                "harm": sum(is_harm(self.judge(row)) for row in rows)}


def sweep(items: list[dict], judged: Judged) -> list[dict]:
    """Per margin: what it gives back among the changed items, and all the judged items with it."""
    table = []
    for margin in MARGINS:
        given_back = [i for i in items if i["gap"] < margin]
        counts = {k: sum(i["outcome"] == k for i in given_back) for k in ("win", "loss", "tie", "clean")}
        table.append({"margin": margin, "given_back": len(given_back), **counts,
                      "split": judged.split(lambda row: margin)})
    return table


def score(split: dict, clean: int) -> int:
    """The per-objective rule's objective: chrF and checks net wins, less clean answers edited and
    harmed answers."""
    (cw, _, cl), (kw, _, kl) = split["chrf"], split["checks"]
    return cw - cl + kw - kl - (clean - split["clean_kept"]) - split["harm"]


def per_objective(judged: Judged) -> tuple[dict[str, float], list[dict]]:
    """The margin per objective the rule in this module's docstring chooses, and its steps."""
    from metaaligner_chain.gate import margin_for
    from validate import TRAINED

    clean = sum(item["kind"] == "clean" for item in judged.judged)
    margins = {key: SHIPPED for key in (*TRAINED, "*")}

    def total(candidate: dict[str, float]) -> int:
        return score(judged.split(lambda row: margin_for(candidate, row["objectives"])), clean)

    steps = []
    for step in range(PASSES):
        for key in margins:
            scores = {m: total({**margins, key: m}) for m in MARGINS}
            margins[key] = max(MARGINS, key=lambda m: (scores[m], -m))
            steps.append({"pass": step + 1, "key": key, "margin": margins[key],
                          "score": scores[margins[key]]})
    return margins, steps


def _rate(win_tie_loss: list[int]) -> str:
    win, _, loss = win_tie_loss
    return f"{win} / {loss} ({win / (win + loss):.0%})" if win + loss else "-"


def _row(label: str, split: dict) -> str:
    return (f"| {label} | {split['changed']} | {split['clean_kept']} | {_rate(split['chrf'])} "
            f"| {_rate(split['checks'])} | {split['harm']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("judged", nargs="+", help="JUDGED_DIR, or JUDGED_DIR=ITEMS for a written set")
    parser.add_argument("--model", help="the GGUF that made JUDGED_DIR (default: the built-in default)")
    parser.add_argument("--per-objective", action="store_true",
                        help="also choose a margin per objective (the rule in this docstring)")
    parser.add_argument("--out", type=Path, default=HERE / "keep-margin.json")
    args = parser.parse_args()
    rows, judged, items = {}, [], []
    for spec in args.judged:
        folder, _, source = spec.partition("=")
        run_rows, run = corpus_rows(Path(source) if source else None), list(read_jsonl(Path(folder) / "items.jsonl"))
        rows.update(run_rows)
        judged += run
        items += scored(run, run_rows, Path(folder) / "keep-scores.jsonl", args.model)
    totals = {k: sum(i["outcome"] == k for i in items) for k in ("win", "loss", "tie", "clean")}
    judging = Judged(judged, rows, items)
    table = sweep(items, judging)
    clean = sum(item["kind"] == "clean" for item in judged)
    print(f"changed items: {len(items)} {totals}")
    print("| margin | given back | wins lost | losses removed | ties | clean restored "
          f"| answers changed of {len(judged)} | clean kept of {clean} | chrF win / loss "
          "| checks win / loss | harmed |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in table:
        split = row["split"]
        print(f"| {row['margin']} | {row['given_back']} | {row['win']} | {row['loss']} | {row['tie']} "
              f"| {row['clean']} | {split['changed']} | {split['clean_kept']} | {_rate(split['chrf'])} "
              f"| {_rate(split['checks'])} | {split['harm']} |")
    found = {"judged": args.judged, "model": args.model, "changed": totals, "sweep": table}
    if args.per_objective:
        from metaaligner_chain.gate import margin_for

        margins, steps = per_objective(judging)
        chosen = judging.split(lambda row: margin_for(margins, row["objectives"]))
        shipped = judging.split(lambda row: SHIPPED)
        print(f"\nper objective: {margins}")
        print(f"| rule | answers changed of {len(judged)} | clean kept of {clean} | chrF win / loss "
              "| checks win / loss | harmed |")
        print("|---|---|---|---|---|---|")
        print(_row(f"one margin, {SHIPPED}", shipped))
        print(_row("per objective", chosen))
        found["per_objective"] = {"margins": margins, "steps": steps, "split": chosen,
                                  "score": score(chosen, clean), "shipped_score": score(shipped, clean)}
    args.out.write_text(json.dumps({**found, "items": items}, indent=1) + "\n")


if __name__ == "__main__":
    main()
