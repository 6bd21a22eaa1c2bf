"""What the keep_margin test costs: the default aligner with it (as shipped) and without it.

Every K-th held-out item is aligned by the built-in default on each backend twice, once with
`keep_margin=None` and once with the shipped margin, the two taking turns item by item (which goes
first alternates) so a busy spell of the shared machine hits both alike. The test scores the
rewrite and a copy of the original after the cached prompt (`backend.score`) for every answer the
aligner changed (on llama.cpp the rewrite's score is read from its decoding and the copy is scored
only until it is sure to fall short of the margin); the stock alternative is not running it. Per
backend: whole-set seconds of each, their ratio, answers changed, and rewrites given back. Writes
`benchmarks/results/keep_margin.json`.

    python -m benchmarks.bench_keep_margin [--backends llama.cpp transformers] [--every 8]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from benchmarks.machine import llama_cpp_version, run_header
from benchmarks.workloads import held_out_inputs
from metaaligner_chain import MetaAlignerRunnable

RESULTS = Path(__file__).parent / "results" / "keep_margin.json"
#: Held-out items per backend: every K-th of 290 (transformers decodes ~3x slower on 2 cores).
EVERY = {"llama.cpp": 8, "transformers": 24}


def main() -> None:
    args = _parse_args()
    load = os.getloadavg()
    rows = {}
    for backend in args.backends:
        inputs = held_out_inputs(args.every or EVERY[backend], message=True)
        # the recorded margins apply with one candidate (the default's four leave them out)
        shipped = MetaAlignerRunnable(objectives=["helpfulness"], backend=backend,
                                      max_new_tokens=args.max_new_tokens, candidates=1)
        variants = {"without": shipped.model_copy(update={"keep_margin": None}), "with": shipped}
        shipped.invoke(inputs[0])  # load, merge and warm outside the timing
        seconds = {name: 0.0 for name in variants}
        changed = {name: 0 for name in variants}
        given_back = 0
        for n, value in enumerate(inputs):
            order = list(variants) if n % 2 == 0 else list(reversed(variants))
            for name in order:
                start = time.perf_counter()
                out = variants[name].invoke(value)
                seconds[name] += time.perf_counter() - start
                changed[name] += _text(out) != value["response"].content
                given_back += name == "with" and "kept" in _info(out)
            print(f"{backend} {n + 1}/{len(inputs)}: {seconds}", flush=True)
        rows[backend] = {
            "items": len(inputs),
            "keep_margin": shipped.resolved_keep_margin(),
            "seconds": {k: round(v, 2) for k, v in seconds.items()},
            "with_vs_without": round(seconds["with"] / seconds["without"], 3),
            "changed": changed,
            "given_back": given_back,
        }
    result = {
        **run_header("the keep_margin test's cost, default aligner", load,
                     llama_cpp_python=llama_cpp_version()),
        "settings": {"max_new_tokens": args.max_new_tokens},
        "backends": rows,
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


def _text(output: dict) -> str:
    return output["response"].content


def _info(output: dict) -> dict:
    return output["response"].response_metadata["metaaligner"]


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["llama.cpp", "transformers"],
                        choices=["llama.cpp", "transformers"])
    parser.add_argument("--every", type=int, default=None,
                        help=f"every K-th held-out item (default per backend: {EVERY})")
    parser.add_argument("--max-new-tokens", type=int, default=384)
    return parser.parse_args()


if __name__ == "__main__":
    main()
