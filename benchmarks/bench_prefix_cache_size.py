"""How many prompts the transformers backend's prefix cache should keep: two (the default) vs four.

Each entry of `PrefixCache` holds a whole prompt's KV (a new prompt starts from the longest prefix
it shares with one: the instruction and, for the same objectives, the objectives). Fewer entries
hold less memory (`bench_memory.py` measures the peak); this measures what they cost in time, on
the built-in default through `MetaAlignerRunnable` on transformers, two runnables (prefix cache of
2 and of 4) taking turns item by item, which goes first alternating:

- `heldout`: every 12th held-out item with its own objectives (most calls name a set the one
  before did not);
- `cycling`: the same items, their objectives cycling through four sets (where four entries keep
  every set's prefix and two do not): the case that favours four.

Per workload: whole-set seconds of each size, their ratio, outputs identical, and the KV bytes a
stored entry holds. Writes `benchmarks/results/prefix_cache_size.json`.

    python -m benchmarks.bench_prefix_cache_size [--every 12]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from benchmarks.machine import run_header
from benchmarks.workloads import held_out_inputs
from metaaligner_chain import MetaAlignerRunnable

RESULTS = Path(__file__).parent / "results" / "prefix_cache_size.json"
SIZES = (2, 4)
CYCLE = (["harmlessness"], ["helpfulness"], ["factuality", "readability"], ["length"])


def main() -> None:
    args = _parse_args()
    load = os.getloadavg()
    inputs = held_out_inputs(args.every)
    cycling = [{**value, "objectives": CYCLE[i % len(CYCLE)]} for i, value in enumerate(inputs)]
    workloads = {"heldout": inputs, "cycling": cycling}
    rows = {}
    for name, values in workloads.items():
        runnables = {size: MetaAlignerRunnable(objectives=["helpfulness"], backend="transformers",
                                               backend_options={"prefix_cache_size": size},
                                               candidates=1)
                     for size in SIZES}
        for runnable in runnables.values():
            runnable.invoke(values[0])  # load and warm outside the timing (and store one prompt)
        seconds = {size: 0.0 for size in SIZES}
        outputs = {size: [] for size in SIZES}
        for n, value in enumerate(values):
            for size in SIZES if n % 2 == 0 else reversed(SIZES):
                start = time.perf_counter()
                outputs[size].append(runnables[size].invoke(value)["response"])
                seconds[size] += time.perf_counter() - start
            print(f"{name} {n + 1}/{len(values)}: {seconds}", flush=True)
        rows[name] = {
            "items": len(values),
            "objective_sets": len({tuple(v["objectives"]) for v in values}),
            "seconds": {str(size): round(s, 2) for size, s in seconds.items()},
            "two_vs_four": round(seconds[2] / seconds[4], 3),
            "identical_outputs": sum(a == b for a, b in zip(outputs[2], outputs[4])),
            "entry_mb": _entry_mb(runnables[4]),
        }
    result = {**run_header("prefix cache of two prompts vs four, transformers, default aligner", load),
              "settings": {"every": args.every, "sizes": list(SIZES), "cycle": [list(c) for c in CYCLE]},
              "workloads": rows}
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


def _entry_mb(runnable: MetaAlignerRunnable) -> float:
    """Mean KV megabytes of the entries the cache holds at the end."""
    entries = list(runnable.load_backend().prefixes._entries.values())
    total = sum(k.numel() * k.element_size() + v.numel() * v.element_size()
                for layers in entries for k, v in layers)
    return round(total / len(entries) / 2**20, 1) if entries else 0.0


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=12, help="every K-th held-out item")
    return parser.parse_args()


if __name__ == "__main__":
    main()
