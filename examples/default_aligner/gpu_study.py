"""The capacity study on the whole corpus, on a GPU: does a larger base than SmolLM2-135M align better?

The CPU study (`study.py`) compared candidates on a 360-item slice; a whole-corpus run of the
larger base, Gemma-3-270M (the package-index GGUF), does not fit 100 minutes on 2 cores. This
script trains it on a GPU with the recipe's data build and budget (recipe.yaml: three stages,
lr, batch, rows up to 640 tokens, bf16; LoRA r 64 as shipped, or full fine-tuning), then aligns
both validation sets — the recipe's query split and the topic split (`validation-topics/`) —
through `MetaAlignerRunnable` on the transformers backend, batched, with the gate and the retry
of looping rewrites as served and the keep test off, so the figures sit beside the shipped
default's keep-off validation runs (`validation-shipped-keep-off.json`,
`validation-topics-shipped-keep-off.json`). The held-out sets are not touched.

    # on the GPU machine (the recipe's data build in runs/default-aligner-data):
    python examples/default_aligner/gpu_study.py train gemma3-270m-lora-r64 --gguf G --out DIR
    # here: the control, the shipped default through the same path on the CPU (15 min on 2 cores)
    python examples/default_aligner/gpu_study.py shipped --out DIR
    # here, on what both wrote (DIR/<candidate>/{query,topics}/aligned.jsonl, DIR/<candidate>/train.json):
    python examples/default_aligner/gpu_study.py judge DIR

`judge` only reads the aligned answers (the same cache `evaluate` keeps), judges them with the
validation scripts' judges and writes gpu-study/results.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from study import trainable_folder  # beside this script
from validate import TRAINED, topic_items, validation_items

HERE = Path(__file__).resolve().parent
OUT = HERE / "gpu-study"
SETS = ("query", "topics")
CANDIDATES = {
    "gemma3-270m-lora-r64": dict(lora=True, lora_r=64, lora_alpha=128, learning_rate=2e-4),
    "gemma3-270m-full": dict(lora=False, learning_rate=5e-5),  # the CPU study's full fine-tuning lr
}
MAX_NEW_TOKENS = 384  # the recipe's eval setting
SHIPPED = "shipped-transformers"  # the built-in default served the same way, on this CPU: the control


def validation_sets() -> dict[str, list]:
    from trainer.recipe import load_recipe

    recipe = load_recipe(HERE / "recipe.yaml")
    return {"query": validation_items(recipe.data), "topics": topic_items(HERE / "validation-topics")}


def cache_name(candidate: str) -> str:
    """Names the candidate's answers in the evaluation cache (and tells the gate's version)."""
    from trainer.evaluate.rewrites import _gate_identity

    return f"gpu-study|{candidate}|hh-rlhf|{MAX_NEW_TOKENS}|retry-loops|{_gate_identity()}"


def train(candidate: str, base: Path, data: str, out: Path, batch_size: int, limit: int | None) -> None:
    """Train one candidate on the recipe's data build, then align both validation sets."""
    from trainer.recipe import load_recipe
    from trainer.train.stages import run_training

    recipe = load_recipe(HERE / "recipe.yaml")
    run = out / candidate / "run"
    config = recipe.train.model_copy(update=dict(
        base=str(base), data=data, out=str(run), save_steps=100_000, **CANDIDATES[candidate],
        **({"max_steps": limit} if limit else {})))
    start = time.time()
    metadata = run_training(config)
    report = {"candidate": candidate, "train_s": round(time.time() - start, 1),
              "config": config.model_dump(mode="json"),
              "stages": {s: {k: m.get(k) for k in ("rows", "steps", "first_loss", "last_loss", "eval_loss")}
                         for s, m in metadata["metrics"].items()}}
    (out / candidate / "train.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["stages"]), f"train {report['train_s']} s", flush=True)
    align(candidate, runnable_for(str(run), batch_size), out / candidate, limit)


def align(label: str, runnable, out: Path, limit: int | None) -> None:
    """Each validation set through `runnable` as served (gate, retry), one batch call a set."""
    from trainer.evaluate import ledger
    from trainer.evaluate.rewrites import runnable_input

    name = cache_name(label)
    for set_name, items in validation_sets().items():
        items = items[:limit] if limit else items
        start = time.time()
        values = runnable.batch([runnable_input(item.row) for item in items])
        seconds = time.time() - start
        (out / set_name).mkdir(parents=True, exist_ok=True)
        with open(out / set_name / "aligned.jsonl", "w") as handle:
            for item, value in zip(items, values):
                aligned = value["response"]
                meta = dict(aligned.response_metadata.get("metaaligner") or {})
                meta.pop("original", None)
                record = {"key": ledger.stable_hash(item.row, name), "id": item.row["id"],
                          "aligned": str(aligned.content), "latency_s": seconds / len(items),
                          "metadata": meta}
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        print(f"{label} {set_name}: {len(items)} items aligned in {seconds:.0f} s", flush=True)


def runnable_for(model: str | None, batch_size: int):
    """The runnable as the study serves every aligner: transformers backend, batched, keep test off."""
    from metaaligner_chain import MetaAlignerRunnable

    return MetaAlignerRunnable(objectives=["helpfulness"], model=model, prompt_format="hh-rlhf",
                               backend="transformers", backend_options={"batch_size": batch_size},
                               max_new_tokens=MAX_NEW_TOKENS, keep_margin=None)


def judge(folder: Path) -> None:
    """Judge every candidate's aligned answers found under `folder`; write gpu-study/results.*."""
    from trainer.evaluate.rewrites import evaluate

    sets = validation_sets()
    results = {}
    for candidate in (*CANDIDATES, SHIPPED):
        if not (folder / candidate).is_dir():
            continue
        trained = folder / candidate / "train.json"
        results[candidate] = json.loads(trained.read_text()) if trained.is_file() else {}
        for set_name, items in sets.items():
            if not (folder / candidate / set_name / "aligned.jsonl").is_file():
                continue  # the run ended before this set
            results[candidate][set_name] = evaluate(items, _not_aligned, cache_name(candidate),
                                                    folder / candidate / set_name, label=set_name)
    OUT.mkdir(exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    write_table(results)


def _not_aligned(row: dict):
    raise RuntimeError(f"item {row['id']!r} has no aligned answer from the GPU run; rerun `train` there.")


def write_table(results: dict) -> None:
    shipped = {"query": HERE / "validation-shipped-keep-off.json",
               "topics": HERE / "validation-topics-shipped-keep-off.json"}
    rows = {f"shipped default, llama.cpp Q8_0 as served ({s})": (s, json.loads(p.read_text()))
            for s, p in shipped.items() if p.is_file()}
    labels = {SHIPPED: "shipped default, this path on the CPU"}
    for candidate, r in results.items():
        rows.update({f"{labels.get(candidate, candidate)} ({s})": (s, r[s]) for s in SETS if s in r})
    lines = ["| aligner (set) | changed | clean kept | fallbacks | harmed | chrF win / tie / loss | "
             "checks win / tie / loss |", "|---|---|---|---|---|---|---|"]
    for label, (_, v) in sorted(rows.items(), key=lambda kv: (kv[1][0], kv[0])):
        chrf = _pooled(v["objectives"], "chrf")
        checks = _pooled(v["objectives"], "independent")
        lines.append(f"| {label} | {v['changed']} | {v['clean']['kept']}/{v['clean']['items']} "
                     f"| {v['fallbacks']['count']}/{v['items']} | {v['harm']['count']} | {chrf} | {checks} |")
    (OUT / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _pooled(per_objective: dict, judge_name: str) -> str:
    """Win / tie / loss summed over the trained objectives."""
    counts = [sum(o[judge_name][k] for name, o in per_objective.items() if name in TRAINED)
              for k in ("win", "tie", "loss")]
    return " / ".join(map(str, counts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("train", help="train one candidate and align both validation sets (GPU)")
    run.add_argument("candidate", choices=list(CANDIDATES))
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument("--gguf", type=Path, help="Gemma-3-270M's GGUF (make_answers.gemma_path)")
    source.add_argument("--base", type=Path, help="a transformers folder instead (a smoke test's tiny model)")
    run.add_argument("--data", default="runs/default-aligner-data", help="the recipe's data build")
    run.add_argument("--out", type=Path, required=True)
    run.add_argument("--batch-size", type=int, default=64, help="answers decoded at once")
    run.add_argument("--limit", type=int, help="smoke test: this many steps a stage, items a set")
    shipped = sub.add_parser("shipped", help="the built-in default through the same path, on this "
                             "machine (the control; --out as given to `judge`)")
    shipped.add_argument("--out", type=Path, required=True)
    shipped.add_argument("--batch-size", type=int, default=16)
    shipped.add_argument("--limit", type=int)
    judged = sub.add_parser("judge", help="judge the aligned answers a `train` run wrote")
    judged.add_argument("folder", type=Path)
    args = parser.parse_args()
    if args.command == "train":
        base = args.base or args.out / "base"
        if args.gguf and not (base / "config.json").is_file():
            trainable_folder(args.gguf, base)
        train(args.candidate, base, args.data, args.out, args.batch_size, args.limit)
    elif args.command == "shipped":
        align(SHIPPED, runnable_for(None, args.batch_size), args.out / SHIPPED, args.limit)
    else:
        judge(args.folder)


if __name__ == "__main__":
    main()
