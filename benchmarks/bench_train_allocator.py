"""CPU training speed of `ma-train train` under glibc's malloc, tcmalloc and jemalloc.

The whole command a user runs is timed (start-up, tokenizing, the steps, saving), on the
preference rows that `ma-train data build` makes from the committed default-aligner corpus,
with the default aligner's LoRA settings and bf16 autocast. Each allocator is chosen with
``MA_TRAIN_ALLOCATOR`` (see `trainer/train/allocator.py`); runs are interleaved so that a change in the
machine's load falls on every variant. Kernel (system) CPU time is recorded beside the wall
time: it is where glibc loses (page faults on freshly mapped logits buffers).
Writes `benchmarks/results/train_allocator.json`.

    python -m benchmarks.bench_train_allocator [--steps 4] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.machine import ROOT, run_header
from trainer.train.allocator import find_allocator

RESULTS = Path(__file__).parent / "results" / "train_allocator.json"
CORPUS = ROOT / "examples" / "default_aligner" / "corpus" / "train"
MA_TRAIN = Path(sys.executable).parent / "ma-train"


def build_rows(out: Path) -> None:
    subprocess.run(
        [str(MA_TRAIN), "data", "build", str(CORPUS), "--format", "generic", "--out", str(out),
         "--prompt-format", "hh-rlhf", "--val-fraction", "0"],
        check=True, stdout=subprocess.DEVNULL,
    )


def train_once(allocator: str, data: Path, out: Path, steps: int) -> dict[str, float]:
    """Wall and CPU seconds of one `ma-train train` (children's rusage, so the re-exec counts)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [str(MA_TRAIN), "train", "--base", "default", "--data", str(data), "--out", str(out),
         "--stage", "preference", "--max-steps", str(steps), "--batch-size", "8",
         "--max-length", "640", "--lora-r", "16", "--lora-alpha", "32", "--bf16",
         "--save-steps", "1000"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "MA_TRAIN_ALLOCATOR": allocator},
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall_s": wall, "user_s": after.ru_utime - before.ru_utime,
            "sys_s": after.ru_stime - before.ru_stime}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per run (batch 8)")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    load = os.getloadavg()
    variants = ["system"] + [name for name in ("tcmalloc", "jemalloc") if find_allocator(name)]
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        build_rows(data)
        for _ in range(args.repeats):
            for name in variants:
                runs[name].append(train_once(name, data, Path(tmp) / name, args.steps))
                print(name, {k: round(v, 1) for k, v in runs[name][-1].items()}, flush=True)
    median = {name: {key: statistics.median(r[key] for r in rs) for key in rs[0]}
              for name, rs in runs.items()}
    base = median["system"]["wall_s"]
    result = {
        **run_header("train_allocator", load, torch_threads=os.cpu_count()),
        "workload": f"ma-train train, preference stage, {args.steps} steps of batch 8 "
                    "(LoRA r16, bf16 autocast, max_length 640), whole command",
        "libraries": {name: find_allocator(name) for name in variants if name != "system"},
        "missing": [n for n in ("tcmalloc", "jemalloc") if n not in variants],
        "repeats": args.repeats,
        "runs": runs,
        "median": median,
        "speedup_vs_system": {name: round(base / m["wall_s"], 2) for name, m in median.items()},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["speedup_vs_system"]))


if __name__ == "__main__":
    main()
