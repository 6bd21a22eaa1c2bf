"""Capacity study: which small aligner to ship, chosen on the validation split of one corpus slice.

Every candidate trains on the same slice of the corpus with the same budget (the three stages,
one epoch each, the same rows and lengths), is exported to an F16 GGUF and aligns the slice's
validation items through `MetaAlignerRunnable` on llama.cpp. The table compares validation
quality (chrF and per-item checks against the original, clean answers kept, fallbacks), training
time, artifact size and decode speed. The held-out set is not touched here.

    python examples/default_aligner/study.py                 # all candidates (~1 h on 2 cores)
    python examples/default_aligner/study.py --only smollm2-lora-r8
Results: examples/default_aligner/study/results.{json,md}; runs under runs/study/ (resumable:
a candidate whose results exist is skipped).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

from trainer.config import DataConfig, TrainConfig
from trainer.data.corpus import Item, load
from trainer.data.formats import load_groups
from trainer.data.reformulate import reformulate, summarize, write_splits
from validate import validation_items  # beside this script

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RUNS = ROOT / "runs" / "study"
OUT = HERE / "study"
TRAINED = ("harmlessness", "helpfulness", "factuality", "readability", "length", "humour")
SLICE_ITEMS = 360
DATA = DataConfig(input=str(RUNS / "slice.jsonl"), format="generic", out=str(RUNS / "data"),
                  prompt_format="hh-rlhf", seed=0, warmup_fraction=0.3, val_fraction=0.15)
#: The same budget for every candidate: one epoch per stage, batch 8, rows up to 640 tokens.
BUDGET = dict(stage="all", epochs=1, batch_size=8, max_length=640, logging_steps=5,
              save_steps=1000, sampling="group_by_length", bf16=True, seed=0)
CANDIDATES = {
    "smollm2-lora-r8": dict(base="default", lora=True, lora_r=8, lora_alpha=16, learning_rate=3e-4),
    "smollm2-lora-r64": dict(base="default", lora=True, lora_r=64, lora_alpha=128, learning_rate=2e-4),
    "smollm2-full": dict(base="default", lora=False, learning_rate=5e-5),
    "gemma3-270m-lora-r8": dict(base="gemma", lora=True, lora_r=8, lora_alpha=16, learning_rate=3e-4),
}


def corpus_slice() -> list[Item]:
    """A seeded sample of the training corpus, written once as the slice's generic-format input
    (reused while it exists, so every candidate sees the same rows)."""
    if Path(DATA.input).is_file():
        return load([DATA.input], TRAINED)
    items = load(sorted((HERE / "corpus" / "train").glob("*.jsonl")), TRAINED)
    picked = random.Random(0).sample(items, min(SLICE_ITEMS, len(items)))
    RUNS.mkdir(parents=True, exist_ok=True)
    with open(DATA.input, "w") as handle:
        for item in picked:
            handle.write(json.dumps(item.row, ensure_ascii=False) + "\n")
    return picked


def gemma_base() -> str:
    """Gemma-3-270M base as a trainable transformers folder (from the package-index GGUF)."""
    from make_answers import gemma_path  # beside this script
    from metaaligner_chain.models.cache import cached_dir, default_cache_root

    gguf = gemma_path()
    folder = cached_dir(default_cache_root() / "gemma-3-270m-base", lambda out: trainable_folder(gguf, out),
                        lambda f: (f / "config.json").is_file())
    return str(folder)


def trainable_folder(gguf: Path, out: Path) -> None:
    """A GGUF's model rebuilt as a plain transformers folder that can train and `save_pretrained`
    (a model loaded from a GGUF can do neither: environment notes)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                  dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = type(loaded)(config)
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def decode_speed(gguf: Path, tokens: int = 128) -> float | None:
    """Tokens per second of plain greedy decoding (2 threads) after a short prompt."""
    from llama_cpp import Llama

    llm = Llama(str(gguf), n_ctx=512, n_threads=2, verbose=False)
    llm("Warm up.", max_tokens=4)
    no_eos = {llm.token_eos(): -100.0}  # an aligner may end a plain prompt at once: decode anyway
    start = time.perf_counter()
    out = llm("Write a short story about a lighthouse keeper.", max_tokens=tokens, temperature=0,
              stop=[], logit_bias=no_eos)
    tokens = out["usage"]["completion_tokens"]
    return tokens / (time.perf_counter() - start) if tokens >= 32 else None


def remeasure_speeds(results: dict[str, dict], rounds: int = 3) -> None:
    """Decode speed of every finished candidate measured again in one run, rounds interleaved
    (the speeds recorded while each trained were taken under whatever else shared the CPU)."""
    speeds: dict[str, list[float]] = {name: [] for name in results}
    for _ in range(rounds):
        for name in results:
            if (speed := decode_speed(RUNS / name / "model.f16.gguf")) is not None:
                speeds[name].append(speed)
    for name, measured in speeds.items():
        results[name]["decode_tok_s"] = round(sorted(measured)[len(measured) // 2], 1) if measured else None
        results[name]["decode_measured"] = f"median of {len(measured)} interleaved rounds (--speeds)"


def artifact_mb(run: Path, lora: bool) -> float:
    """What would ship: the adapter in fp16, or the whole model in fp16."""
    if lora:
        from safetensors.torch import load_file

        weights = load_file(str(run / "stages" / "preference" / "adapter_model.safetensors"))
        return sum(t.numel() for t in weights.values()) * 2 / 1e6
    return (run / "model.f16.gguf").stat().st_size / 1e6


def run_candidate(name: str, val: list[Item]) -> dict:
    from trainer.export.gguf import export_gguf
    from trainer.evaluate.rewrites import default_aligner, evaluate
    from trainer.train.stages import run_training

    spec = dict(CANDIDATES[name])
    if spec["base"] == "gemma":
        spec["base"] = gemma_base()
    run = RUNS / name
    config = TrainConfig(data=DATA.out, out=str(run), **BUDGET, **spec)
    start = time.time()
    metadata = run_training(config)
    train_s = time.time() - start
    gguf = export_gguf(run, run / "model.f16.gguf", quant="f16")
    speed = decode_speed(gguf)
    align, label = default_aligner(model=str(gguf), prompt_format="hh-rlhf", max_new_tokens=320)
    quality = evaluate(val, align, label, run / "validation", label="validation")
    return {
        "candidate": name,
        "train_minutes": round(train_s / 60, 1),
        "allocator": os.environ.get("LD_PRELOAD") or "glibc malloc",
        "stages": {s: {k: m.get(k) for k in ("rows", "steps", "first_loss", "last_loss", "eval_loss")}
                   for s, m in metadata["metrics"].items()},
        "artifact_mb": round(artifact_mb(run, spec["lora"]), 1),
        "decode_tok_s": round(speed, 1) if speed else None,
        "validation": quality,
    }


def write_table(results: dict[str, dict]) -> None:
    lines = ["| candidate | chrF win rate | checks win rate | clean kept | fallbacks | harm | "
             "val loss (pref.) | train min (allocator) | artifact MB | decode tok/s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        v = r["validation"]
        wins = {j: _pooled(v["objectives"], j) for j in ("chrf", "independent")}
        lines.append(
            f"| {name} | {_pct(wins['chrf'])} | {_pct(wins['independent'])} | "
            f"{v['clean']['kept']}/{v['clean']['items']} | {v['fallbacks']['count']}/{v['items']} | "
            f"{v['harm']['count']}/{v['items']} | {r['stages']['preference']['eval_loss']:.3f} | "
            f"{r['train_minutes']} ({_allocator(r)}) | {r['artifact_mb']} | {r['decode_tok_s']} |")
    (OUT / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _allocator(result: dict) -> str:
    """tcmalloc / jemalloc / glibc: training time depends on it about twofold (trainer/train/allocator.py)."""
    preload = result.get("allocator", "glibc malloc")
    return next((name for name in ("tcmalloc", "jemalloc") if name in preload), "glibc")


def _pooled(per_objective: dict, judge: str) -> float | None:
    wins = sum(o[judge]["win"] for o in per_objective.values())
    losses = sum(o[judge]["loss"] for o in per_objective.values())
    return wins / (wins + losses) if wins + losses else None


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def main() -> None:
    from trainer.train.allocator import reexec_with_fast_allocator

    reexec_with_fast_allocator()  # about twice the training speed on CPU (trainer/train/allocator.py)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=list(CANDIDATES))
    parser.add_argument("--speeds", action="store_true",
                        help="only re-measure every finished candidate's decode speed, in one quiet run")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    results_path = OUT / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    if args.speeds:
        remeasure_speeds(results)
        results_path.write_text(json.dumps(results, indent=2) + "\n")
        write_table(results)
        return
    picked = corpus_slice()
    groups = load_groups(DATA.input, "generic")
    splits = reformulate(groups, DATA)
    write_splits(splits, summarize(splits, DATA, len(groups)), DATA.out)
    val = validation_items(DATA)
    print(f"slice: {len(picked)} items, {len(val)} validation items")
    for name in args.only or list(CANDIDATES):
        if name in results:
            continue
        results[name] = run_candidate(name, val)
        results_path.write_text(json.dumps(results, indent=2) + "\n")
        write_table(results)


if __name__ == "__main__":
    main()
