"""Judge a trained run on the corpus's validation split (the queries `data build` held out), or on
the topic-split validation set (`--items validation-topics`).

Settings are chosen here, never on the held-out set. The run is exported to an F16 GGUF once and
served through `MetaAlignerRunnable` on llama.cpp, as the default aligner is.

    python examples/default_aligner/validate.py [RUN_DIR] [--max-new-tokens N] [--quant q8_0]
                                                [--keep-margin M|off] [--items PATH] [--out DIR]
                                                [--summary FILE] [--reword FILE]
    python examples/default_aligner/validate.py --shipped [--no-retry] [--keep-margin M|off]
                                                [--items PATH] [--out DIR] [--summary FILE]
Writes RUN_DIR/validation/ (or DIR) and examples/default_aligner/validation.json for the
recipe's own run (otherwise validation-<RUN_DIR's name>-keep-off.json, so judging another run
never overwrites the recipe's summary; validation-<RUN_DIR's name>-keep-M.json with
`--keep-margin`, the keep test at margin M; a run's own metadata records no margin, so it is off
without it); `--shipped` judges the
built-in default as it is served (its Q8_0 file, the gate, the retry of looping rewrites unless
`--no-retry`, its recorded margins unless `--keep-margin`), writes DIR/ and
examples/default_aligner/validation-shipped[-no-retry][-keep-M].json. With `--items` (a JSONL
file or a folder of them, e.g. examples/default_aligner/validation-topics) the file names start
`validation-topics` instead of `validation`; `--summary FILE` writes the summary there instead.
With `--reword FILE` (e.g. validation-wordings.json, never trained on) the aligner reads each
trained objective in another wording while the judges know it by its key, and the names gain
`-reworded`: does the aligner follow what an objective says, or only the names it was trained on?
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from trainer.recipe import load_recipe
from trainer.data.corpus import load
from trainer.data.formats import load_groups
from trainer.data.reformulate import paraphrase_table, split_queries

HERE = Path(__file__).resolve().parent
TRAINED = ("harmlessness", "helpfulness", "factuality", "readability", "length", "humour")
UNSEEN = ("empathy", "fairness")  # never trained; the topic-split set names them too


def validation_items(data_config) -> list:
    """Rewrite and clean items whose query the recipe's data build put in validation."""
    groups = load_groups(data_config.input, data_config.format)
    val = split_queries(groups, data_config.val_fraction, data_config.seed)
    source = Path(data_config.input)
    items = load(sorted(source.glob("*.jsonl")) if source.is_dir() else [source], TRAINED)
    return [i for i in items if i.kind != "chain" and i.row["query"] in val]


def main() -> None:
    from trainer.export.gguf import export_gguf
    from trainer.evaluate.rewrites import default_aligner, evaluate, write_report

    recipe = load_recipe(HERE / "recipe.yaml")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", default=recipe.train.out)
    parser.add_argument("--max-new-tokens", type=int, default=recipe.eval.max_new_tokens)
    parser.add_argument("--shipped", action="store_true",
                        help="judge the built-in default as served, not a run directory")
    parser.add_argument("--no-retry", action="store_true",
                        help="fall back on a looping rewrite at once (retry_loops=False)")
    parser.add_argument("--out", help="where the judged items go (default: runs/validation-shipped..., "
                        "or RUN_DIR/validation)")
    parser.add_argument("--keep-margin", type=_margin, default="auto",
                        help="the keep test at this margin, or 'off' (default: a run's off, the "
                        "shipped default's own recorded margins)")
    parser.add_argument("--items", type=Path,
                        help="judge these items (a JSONL file or a folder of them) instead of the "
                        "recipe's validation split")
    parser.add_argument("--summary", type=Path,
                        help="write the summary here (default: examples/default_aligner/, named "
                        "as above)")
    parser.add_argument("--reword", type=Path,
                        help="a JSON file of other wordings per objective key (e.g. "
                        "validation-wordings.json): the aligner reads each trained objective in one "
                        "of them, the judges by its key; the file names gain '-reworded'")
    parser.add_argument("--quant", default="f16", choices=("f16", "q8_0"),
                        help="the GGUF a run is exported to (q8_0: as the default ships)")
    args = parser.parse_args()
    items = topic_items(args.items) if args.items else validation_items(recipe.data)
    stem = ("validation-topics" if args.items else "validation") + ("-reworded" if args.reword else "")
    wordings = {key: [o.description for o in found] for key, found in
                paraphrase_table(str(args.reword), 0.0, TRAINED, field="--reword").items()
                } if args.reword else None
    keep = args.keep_margin
    named = "" if keep == "auto" else f"-keep-{'off' if keep is None else keep}"
    if args.shipped:
        align, name = default_aligner(None, None, args.max_new_tokens, retry_loops=not args.no_retry,
                                      keep_margin=keep, wordings=wordings)
        suffix = ("-no-retry" if args.no_retry else "") + named
        out = Path(args.out or f"runs/{stem}-shipped{suffix}")
        results = evaluate(items, align, name, out, label=f"{stem} (shipped{suffix})")
        print(write_report(results, out).read_text())
        (args.summary or HERE / f"{stem}-shipped{suffix}.json").write_text(json.dumps(results, indent=2) + "\n")
        return
    run = Path(args.run)
    gguf = run / f"model.{args.quant}.gguf"
    if not gguf.exists():
        export_gguf(run, gguf, quant=args.quant)
    keep = None if keep == "auto" else keep  # a run's own metadata records no margin
    align, name = default_aligner(str(gguf), "hh-rlhf", args.max_new_tokens, keep_margin=keep,
                                  wordings=wordings)
    out = Path(args.out) if args.out else run / stem
    results = evaluate(items, align, name, out, label=stem if keep is None else f"{stem} (keep {keep})")
    print(write_report(results, out).read_text())
    recipe_run = keep is None and run.resolve() == Path(recipe.train.out).resolve()
    written = f"{stem}.json" if recipe_run else f"{stem}-{run.name}-keep-{'off' if keep is None else keep}.json"
    (args.summary or HERE / written).write_text(json.dumps(results, indent=2) + "\n")


def _margin(text: str) -> float | str | None:
    named = {"off": None, "auto": "auto"}
    return named[text] if text in named else float(text)


def topic_items(path: Path) -> list:
    """Rewrite and clean items of a written validation set (a JSONL file or a folder of them)."""
    return load(sorted(path.glob("*.jsonl")) if path.is_dir() else [path], TRAINED + UNSEEN)


if __name__ == "__main__":
    main()
