"""Several candidates per answer, chosen by minimum Bayes risk: the fifteenth look (issue 13).

`run` aligns both validation sets with the built-in default as it ships but with the keep test off
and `candidates=N` (the greedy rewrite, then N - 1 samples, each through the gate); every
candidate's text is in its output's metadata, so `grid` recomputes the choice offline for each
setting of the grid (how many samples, the original's weight as a reference, whether the original
may itself be chosen; for runs that record which candidates fell back, whether they vote; and the
`original_margin` with the shipped choice) and scores it with `keep_margin.py`'s rule, as
`preference.py compare` does:

    python examples/default_aligner/candidates.py run [--candidates 4] [--out runs/candidates]
    python examples/default_aligner/candidates.py grid [--out runs/candidates] [--json candidates-study.json]
    python examples/default_aligner/candidates.py served [--out runs/candidates]

`run` writes OUT/query/ and OUT/topics/ (aligned.jsonl, items.jsonl, results.json, report.md;
a rerun reuses what is done); `grid` prints one line per setting and writes the figures. `served`
writes OUT/served-query/ and OUT/served-topics/: the outputs as the fifteenth look's choice
(`selection.choose` with its constants, no `original_margin`) leaves them, judged as `validate.py`
judges, so that `keep_margin.py` can score the keep test on the chosen rewrites.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from trainer.jsonl import read_jsonl
from trainer.recipe import load_recipe

HERE = Path(__file__).resolve().parent
SPLITS = ("query", "topics")


def split_items(split: str) -> list:
    from validate import topic_items, validation_items

    if split == "topics":
        return topic_items(HERE / "validation-topics")
    return validation_items(load_recipe(HERE / "recipe.yaml").data)


def later_samples(first: int):
    """`MetaAlignerRunnable` whose sampled candidates start at index `first` instead of 1: with
    `candidates=N` it writes the greedy rewrite and samples first ... first + N - 2, each as the
    runnable with more candidates would (a sample's seed comes from its index and prompt), so a
    second run extends a first one's candidates (`grid --more`)."""
    from metaaligner_chain import MetaAlignerRunnable

    class LaterSamples(MetaAlignerRunnable):
        def candidate_settings(self, index: int, prompt: str):
            return super().candidate_settings(index + first - 1, prompt)

    return LaterSamples


def run(args: argparse.Namespace) -> None:
    from trainer.evaluate.rewrites import _gate_identity, _identity, evaluate, runnable_input

    sampled = {} if args.temperature is None else {"candidate_temperature": args.temperature}
    runnable = later_samples(args.first_sample)(
        objectives=["helpfulness"], max_new_tokens=args.max_new_tokens, keep_margin=None,
        candidates=args.candidates, **sampled)
    samples = "" if args.first_sample == 1 else f"|samples-from-{args.first_sample}"
    samples += "" if args.temperature is None else f"|temperature-{args.temperature}"
    name = (f"{_identity(None)}|auto|{args.max_new_tokens}|retry-loops|candidates-{args.candidates}"
            f"{samples}|{_gate_identity()}")
    for split in SPLITS:
        results = evaluate(split_items(split), lambda row: runnable.invoke(runnable_input(row))["response"],
                           name, args.out / split, label=f"{split} split, candidates={args.candidates}")
        print(split, {k: results[k] for k in ("changed", "clean", "harm", "latency_s")}, flush=True)


def written(record: dict) -> list[str] | None:
    """Every candidate's text in order (the greedy rewrite first), from an output's metadata;
    None for an output without them (aligned in parts, or no model call)."""
    meta = record["metadata"]
    if "chosen" not in meta:
        return None
    index, count = meta["chosen"]
    texts = list(meta["candidates"])
    if index < count:
        texts.insert(index, record["aligned"])
    return texts


def joined(record: dict, more: dict) -> dict:
    """`record`'s candidates followed by the samples of `more`, a run of the same item made with
    `run --first-sample` = `record`'s count (its greedy rewrite, the same as `record`'s, is
    dropped), as one output of the runnable with all of them: the greedy rewrite first, the
    fallen-back candidates renumbered. An output without candidates stands as it is."""
    texts, extra = written(record), written(more)
    if texts is None or extra is None:
        return record
    if extra[0] != texts[0]:
        raise ValueError(f"{record['id']}: the two runs' greedy rewrites differ; --more must "
                         "extend the same model and settings")
    all_texts = [*texts, *extra[1:]]
    meta = {**record["metadata"], "chosen": [0, len(all_texts)], "candidates": all_texts[1:]}
    meta.pop("fell_back", None)
    if "fell_back" in record["metadata"] and "fell_back" in more["metadata"]:  # both recorded
        shift = len(texts) - 1
        meta["fell_back"] = [*record["metadata"]["fell_back"],
                             *({**entry, "candidate": entry["candidate"] + shift}
                               for entry in more["metadata"]["fell_back"] if entry["candidate"])]
    return {**record, "aligned": all_texts[0], "metadata": meta}


#: How a candidate that fell back takes part in the vote: as the original's text, not at all, or
#: with the rewrite the gate turned down (where there was one: an echo or an empty answer has
#: none), that rewrite then voting and eligible; and both of the last two.
MODES = {"fallbacks vote": (True, False), "fallbacks left out": (False, False),
         "turned-down rewrites vote": (True, True),
         "turned-down rewrites vote, fallbacks left out": (False, True)}


#: The `original_margin`s the grid tries (chrF points) with the shipped choice.
ORIGINAL_MARGINS = (0.0, 2.0, 5.0, 10.0, 15.0, 20.0)
#: The consensus thresholds (mean chrF of the chosen text against the others) the grid tries.
CONSENSUS = (20.0, 30.0, 40.0, 50.0, 60.0, 70.0)


def chooser(k: int, weight: float = 0.0, original_candidate: bool = False,
            mode: str = "fallbacks vote", original_margin: float | None = None,
            consensus: float | None = None, samples: tuple[int, ...] | None = None):
    """The grid's choice among the first `k + 1` candidates of a record for an item (or, with
    `samples`, the greedy rewrite and those samples: (4, 5, 6) for the fourth to sixth). Which
    candidates fell back, and the rewrites the gate turned down, are in outputs made since they
    were recorded (metadata ``fell_back``); in older ones a fallback is only the original's text,
    and votes as such. `consensus`: the original instead when the chosen text's mean chrF against
    the other candidates is under it (the candidates disagree)."""
    from metaaligner_chain import selection
    from metaaligner_chain.gate import Verdict

    fallbacks_vote, turned_down_vote = MODES[mode]

    def choose(item, record: dict) -> dict:
        texts = written(record)
        if texts is None:
            return record
        fell_back = {entry["candidate"]: entry["rejected"]
                     for entry in record["metadata"].get("fell_back") or ()}
        verdicts = []
        for i in (0, *samples) if samples else range(min(k + 1, len(texts))):
            text = texts[i]
            if i not in fell_back:
                verdicts.append(Verdict(text=text, aligned=True))
            elif turned_down_vote and fell_back[i]:
                verdicts.append(Verdict(text=fell_back[i], aligned=True))
            else:
                verdicts.append(Verdict(text=text, aligned=False, fallback_reason="fell back"))
        chosen = selection.choose(item.row["answer"], verdicts, weight, original_candidate,
                                  fallbacks_vote, original_margin)
        if consensus is not None and chosen.chosen and chosen.chosen[0] < len(verdicts):
            others = [v.text for i, v in enumerate(verdicts) if i != chosen.chosen[0]]
            agreement = sum(selection.similarity(chosen.text, t) for t in others) / len(others)
            if agreement < consensus:
                return {**record, "aligned": item.row["answer"]}
        return {**record, "aligned": chosen.text,
                "metadata": {**record["metadata"], "fallback_reason": chosen.fallback_reason}}

    return choose


def figures(items: list, records: list[dict], fallbacks_known: bool = True) -> dict:
    """The rule's figures (`preference.py compare`), the unseen objectives' net wins, and per
    objective the chrF and checks wins and losses (the issue's win rates leave ties out).
    `fallbacks_known`: the run recorded which candidates fell back (else no fallback count)."""
    from preference import rule_figures
    from trainer.evaluate.rewrites import judge_item, offline_scorers, summarize

    scorers = offline_scorers()
    judged = [judge_item(i.row, r["aligned"], scorers) for i, r in zip(items, records)]
    summary = summarize(items, records, judged)
    per_objective = {key: {name: [counts[judge]["win"], counts[judge]["loss"]]
                           for name, judge in (("chrf", "chrf"), ("checks", "independent"))}
                     for key, counts in summary["objectives"].items()}
    unseen = sum(win - loss for key in ("empathy", "fairness") if key in per_objective
                 for win, loss in per_objective[key].values())
    found = {**rule_figures(summary), "unseen_net": unseen, "objectives": per_objective}
    if not fallbacks_known:
        del found["fallbacks"]  # an older run: which candidates fell back is not recorded
    return found


#: With `grid --more`: how many samples (or which), each with the original margins, fallbacks
#: voting as the runnable's do, then left out; the first is the served choice's draw.
MORE_SAMPLES = {"samples 1-3": {"k": 3}, "samples 4-6": {"k": 3, "samples": (4, 5, 6)},
                "samples 1-5": {"k": 5}, "samples 1-7": {"k": 7}}


def more_settings() -> list[tuple[str, dict]]:
    """The grid of `grid --more`: more samples per item (`MORE_SAMPLES`), by original margin."""
    return [(f"{name}, original margin {d}" + ("" if mode == "fallbacks vote" else f", {mode}"),
             {**draw, "original_margin": d, "mode": mode})
            for mode in ("fallbacks vote", "fallbacks left out")
            for name, draw in MORE_SAMPLES.items() for d in (None, *ORIGINAL_MARGINS)]


def grid(args: argparse.Namespace) -> None:
    shipped = "K=3 samples, original weight 0.0, original a candidate: False"
    settings = more_settings() if args.more else [("greedy only", {"k": 0})] + [
        (f"K={k} samples, original weight {w}, original a candidate: {oc}"
         + ("" if mode == "fallbacks vote" else f", {mode}"),
         {"k": k, "weight": w, "original_candidate": oc, "mode": mode})
        for k in (2, 3) for w in (0.0, 0.5, 1.0) for oc in (False, True) for mode in MODES] + [
        (f"{shipped}, original margin {d}", {"k": 3, "original_margin": d})
        for d in ORIGINAL_MARGINS] + [
        (f"{shipped}, fallbacks left out, original margin {d}",
         {"k": 3, "original_margin": d, "mode": "fallbacks left out"})
        for d in ORIGINAL_MARGINS] + [
        (f"{shipped}, the original below consensus {t}", {"k": 3, "consensus": t})
        for t in CONSENSUS]
    settings = [(label, setting) for label, setting in settings
                if not args.only or any(part in label for part in args.only)]
    study: dict[str, dict] = {}
    for split in args.splits:
        items = split_items(split)
        records = {r["id"]: r for r in read_jsonl(args.out / split / "aligned.jsonl")}
        if args.more:
            more = {r["id"]: r for r in read_jsonl(args.more / split / "aligned.jsonl")}
            if absent := sorted(records.keys() - more.keys()):
                raise SystemExit(f"--more {args.more}: {len(absent)} items of {split} are not in "
                                 f"it (first: {absent[0]}); finish its `run` first")
            records = {i: joined(r, more[i]) for i, r in records.items()}
        missing = sum(written(records[i.row["id"]]) is None for i in items)
        print(f"{split}: {missing} of {len(items)} outputs carry no candidates (their output stands)")
        missing_fell_back = any("fell_back" not in r["metadata"]
                                for r in records.values() if written(r))
        for label, setting in settings:
            if setting.get("mode", "fallbacks vote") != "fallbacks vote" and missing_fell_back:
                continue
            choose = chooser(**setting)
            found = figures(items, [choose(i, records[i.row["id"]]) for i in items],
                            fallbacks_known=not missing_fell_back)
            study.setdefault(label, {})[split] = found
            print(split, label, json.dumps(found), flush=True)
    for label, splits in study.items():
        splits["summed"] = sum(s["score"] for s in splits.values())
        splits["unseen_net"] = sum(s["unseen_net"] for s in splits.values() if isinstance(s, dict))
        print(label, "summed", splits["summed"], "unseen net", splits["unseen_net"])
    if args.json:
        args.json.write_text(json.dumps(study, indent=1) + "\n")


def served(args: argparse.Namespace) -> None:
    from metaaligner_chain import selection
    from trainer.evaluate import ledger
    from trainer.evaluate.rewrites import evaluate

    choose = chooser(args.candidates - 1, selection.ORIGINAL_WEIGHT, selection.ORIGINAL_CANDIDATE)
    name = f"served choice of {args.out}"
    for split in SPLITS:
        items = split_items(split)
        records = {r["id"]: r for r in read_jsonl(args.out / split / "aligned.jsonl")}
        out = args.out / f"served-{split}"
        out.mkdir(parents=True, exist_ok=True)
        (out / "aligned.jsonl").unlink(missing_ok=True)
        for item in items:
            chosen = choose(item, records[item.row["id"]])
            key = ledger.stable_hash(item.row, name)
            ledger.append(out / "aligned.jsonl", {**chosen, "key": key})

        def missing(row: dict) -> None:
            raise KeyError(f"{row['id']}: not in {args.out / split}; run `candidates.py run` first")

        results = evaluate(items, missing, name, out, label=f"{split} split, the served choice")
        print(split, {k: results[k] for k in ("changed", "clean", "harm")}, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    go = sub.add_parser("run", help="align both validation sets with candidates=N")
    go.add_argument("--candidates", type=int, default=4)
    go.add_argument("--max-new-tokens", type=int, default=384)
    go.add_argument("--first-sample", type=int, default=1,
                    help="index of the first sampled candidate (to extend another run's)")
    go.add_argument("--temperature", type=float,
                    help="the sampled candidates' temperature (default: the runnable's)")
    go.add_argument("--out", type=Path, default=Path("runs/candidates"))
    table = sub.add_parser("grid", help="the grid's figures from run's outputs")
    table.add_argument("--out", type=Path, default=Path("runs/candidates"))
    table.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS))
    table.add_argument("--json", type=Path, help="write the figures here (e.g. candidates-study.json)")
    table.add_argument("--only", nargs="+", metavar="TEXT",
                       help="only the settings whose label holds one of these (e.g. 'original margin')")
    table.add_argument("--more", type=Path, help="a `run --first-sample` of the same items: its "
                       "samples join --out's, and the grid is the one of more samples")
    keep = sub.add_parser("served", help="run's outputs as the shipped choice leaves them, judged")
    keep.add_argument("--out", type=Path, default=Path("runs/candidates"))
    keep.add_argument("--candidates", type=int, default=4, help="how many candidates run made")
    args = parser.parse_args()
    if getattr(args, "first_sample", 1) < 1:
        parser.error(f"--first-sample {args.first_sample}: sample indices start at 1 "
                     "(1 for a first run; an earlier run's candidate count to extend it)")
    {"run": run, "grid": grid, "served": served}[args.command](args)


if __name__ == "__main__":
    main()
