"""Aligned answers per second under concurrency: 1, 4, 8 and 32 callers on each local backend.

The built-in default aligner aligns the same held-out items (every K-th, each with its own
objectives) in several ways, taking turns within a round so a busy spell of the shared machine
hits all alike:

- `callers_<n>`: `n` concurrent callers, each awaiting `ainvoke` on its share of the items, as a
  web server's requests arrive (one shared runnable, one loaded model);
- `batch`: one `batch()` call over all the items (`max_concurrency` = the batch size), the path
  that batches prompts on transformers;
- `callers_1_keep_off`, `callers_8_keep_off`: one and eight callers with `keep_margin=None`, to
  show what the keep test costs under concurrency (these two are compared with each other).

Figures are items per second over the whole set and, per row, the ratio to one caller. llama.cpp
runs one sequence at a time in this package (see issue 17's throughput item), so concurrency can
only overlap Python work with decoding there; transformers batches prompts only through `batch`,
and with `--transformers-workers 1 2` it is measured again with `backend_options={"workers": 2}`
(two calls decoding at once, torch's threads divided between them; measured after the one-worker
rows, since that division is process-wide). Writes `benchmarks/results/concurrency.json` (or
`--out`).

    python -m benchmarks.bench_concurrency [--backends llama.cpp transformers] [--every 10]
        [--rounds 1] [--max-new-tokens 128] [--transformers-workers 1 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path

from benchmarks.machine import llama_cpp_version, run_header
from benchmarks.workloads import held_out_inputs
from metaaligner_chain import MetaAlignerRunnable

RESULTS = Path(__file__).parent / "results" / "concurrency.json"
CALLERS = (1, 4, 8, 32)
#: Variants without the keep test, each compared with the first of them.
KEEP_OFF = ("callers_1_keep_off", "callers_8_keep_off")
#: Held-out items per backend: every K-th of 290 (transformers decodes ~3x slower on 2 cores).
EVERY = {"llama.cpp": 9, "transformers": 18}
#: Target of issue 17: 8 callers on llama.cpp at >= 2.5x one caller's answers per second.
TARGET_8_CALLERS = 2.5


def main() -> None:
    args = _parse_args()
    load = os.getloadavg()
    rows = {}
    runs = [(b, w) for b in args.backends
            for w in (sorted(args.transformers_workers) if b == "transformers" else [1])]
    for backend, workers in runs:
        label = backend if workers == 1 else f"{backend}, {workers} workers"
        inputs = held_out_inputs(args.every or EVERY[backend])
        aligner = MetaAlignerRunnable(objectives=["helpfulness"], backend=backend,
                                      max_new_tokens=args.max_new_tokens, candidates=1,
                                      backend_options={"workers": workers} if workers > 1 else {})
        aligner.invoke(inputs[0])  # load, merge and warm outside the timing
        seconds: dict[str, list[float]] = {f"callers_{n}": [] for n in CALLERS}
        seconds["batch"] = []
        seconds.update({variant: [] for variant in KEEP_OFF})
        outputs: dict[str, list[str]] = {}
        for round_ in range(args.rounds):
            order = list(seconds)
            order = order[round_ % len(order):] + order[: round_ % len(order)]
            for variant in order:
                start = time.perf_counter()
                outputs[variant] = _run(aligner, inputs, variant)
                seconds[variant].append(time.perf_counter() - start)
                print(f"{label} {variant}: {seconds[variant][-1]:.1f} s", flush=True)
        def one(variant: str) -> str:
            """The one-caller variant `variant` is compared with."""
            return KEEP_OFF[0] if variant in KEEP_OFF else "callers_1"

        rows[label] = {
            "items": len(inputs),
            "answers_per_s": {v: round(len(inputs) / statistics.median(s), 3)
                              for v, s in seconds.items()},
            "vs_one_caller": {v: round(statistics.median(seconds[one(v)]) / statistics.median(s), 3)
                              for v, s in seconds.items()},
            "seconds": {v: [round(x, 2) for x in s] for v, s in seconds.items()},
            "identical_to_one_caller": {v: sum(a == b for a, b in zip(o, outputs[one(v)]))
                                        for v, o in outputs.items()},
        }
    result = {
        **run_header("aligned answers per second under concurrency, default aligner", load,
                     llama_cpp_python=llama_cpp_version()),
        "settings": {"max_new_tokens": args.max_new_tokens, "rounds": args.rounds,
                     "callers": list(CALLERS)},
        "backends": rows,
        "targets": {
            "llama_cpp_8_callers_ge_2.5x": (
                rows["llama.cpp"]["vs_one_caller"]["callers_8"] >= TARGET_8_CALLERS
                if "llama.cpp" in rows else None
            ),
        },
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


def _run(aligner: MetaAlignerRunnable, inputs: list[dict], variant: str) -> list[str]:
    """Align `inputs` one way; the aligned texts in input order."""
    if variant == "batch":
        return [_text(x) for x in aligner.batch(inputs, config={"max_concurrency": len(inputs)})]
    if variant in KEEP_OFF:
        aligner = aligner.model_copy(update={"keep_margin": None})
    callers = int(variant.split("_")[1])

    async def caller(share: list[int], out: list[str]) -> None:
        for i in share:
            out[i] = _text(await aligner.ainvoke(inputs[i]))

    async def all_callers() -> list[str]:
        out = [""] * len(inputs)
        shares = [list(range(c, len(inputs), callers)) for c in range(callers)]
        await asyncio.gather(*(caller(s, out) for s in shares if s))
        return out

    return asyncio.run(all_callers())


def _text(output: dict) -> str:
    """The aligned response of one output dict."""
    return getattr(output["response"], "content", output["response"])


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["llama.cpp", "transformers"],
                        choices=["llama.cpp", "transformers"])
    parser.add_argument("--every", type=int, default=None,
                        help="every K-th held-out item (default per backend: " f"{EVERY})")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--transformers-workers", type=int, nargs="+", default=[1, 2],
                        help="transformers rows, one per `workers` value")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args()


if __name__ == "__main__":
    main()
