"""Decoding in a worker thread beside idle OpenMP pools: the backends' pool release on and off.

llama.cpp's CPU build and torch run their parallel work on libgomp, which keeps a pool of worker
threads for every thread that ran parallel work and, once the pools hold more threads than there
are cores, puts waiting threads to sleep at every barrier. The llama.cpp backend decodes a stream
(which `invoke` uses, to stop early on a prompt echo) in a worker thread, and so does the
transformers backend's `stream`; a pool left idle in the caller's thread (by a policy model run
there, or by the keep test's `score`) then slowed that decoding. `shipped` = the backends as they
are (`backends/openmp.py`: the caller's pool is released before a worker decodes, and every call
releases its thread's pool when it ends); `pools_kept` = the same with the release turned off (the
package before it).

Scenarios, each on the built-in default aligner over every k-th held-out item (its own
objectives), timing the aligner's calls only:
- `alone`: `MetaAlignerRunnable.invoke` one item after another (llama.cpp);
- `after_policy`: before each call a policy model (the packaged SmolLM2-135M-Instruct GGUF through
  llama-cpp-python, as `examples/quickstart.py` runs it) answers the query in the same thread;
- `async`: `await runnable.ainvoke(...)` one item after another in one event loop (LangChain runs
  each in a thread of the loop's executor);
- `transformers_after_policy`: `runnable.stream` on the transformers backend, after a policy on
  transformers (the packaged SmolLM2-135M-Instruct, fp32) answers the query in the same thread.

Each (scenario, variant) runs in a fresh process (pools a variant leaves in other threads must not
reach the next), the variants alternating, `--rounds` times; per scenario: seconds, the ratio
pools_kept / shipped, outputs identical. Writes `benchmarks/results/stream_threads.json`.

    python -m benchmarks.bench_stream_threads [--every 30] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.machine import run_header
from benchmarks.workloads import held_out_inputs

RESULTS = Path(__file__).parent / "results" / "stream_threads.json"
SCENARIOS = ("alone", "after_policy", "async", "transformers_after_policy")
VARIANTS = ("shipped", "pools_kept")
#: The transformers scenario decodes about four times slower: fewer items, shorter rewrites.
TRANSFORMERS_ITEMS = 6
MAX_NEW_TOKENS = {"transformers_after_policy": 128}


def main() -> None:
    args = _parse_args()
    if args.child:
        print(json.dumps(_child(*args.child, every=args.every)))
        return
    load = os.getloadavg()
    runs: dict[str, dict[str, list[dict]]] = {s: {v: [] for v in VARIANTS} for s in SCENARIOS}
    for round_ in range(args.rounds):
        for scenario in SCENARIOS:
            for variant in VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]:
                out = subprocess.run(
                    [sys.executable, "-m", "benchmarks.bench_stream_threads", "--every",
                     str(args.every), "--child", scenario, variant],
                    capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent)
                runs[scenario][variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(f"round {round_ + 1} {scenario} {variant}: "
                      f"{runs[scenario][variant][-1]['seconds']} s", flush=True)
    scenarios = {}
    for scenario, by_variant in runs.items():
        seconds = {v: round(sum(r["seconds"] for r in rs), 2) for v, rs in by_variant.items()}
        first = by_variant["shipped"][0]["outputs"]
        scenarios[scenario] = {
            "items": len(first),
            "seconds": seconds,
            "pools_kept_vs_shipped": round(seconds["pools_kept"] / seconds["shipped"], 3),
            "identical_outputs": all(r["outputs"] == first
                                     for rs in by_variant.values() for r in rs),
            "released_runtimes": by_variant["shipped"][0]["runtimes"],
        }
    result = {**run_header("decoding beside idle OpenMP pools: release on and off", load,
                           cpus=os.cpu_count()),
              "settings": {"every": args.every, "rounds": args.rounds,
                           "transformers_items": TRANSFORMERS_ITEMS,
                           "max_new_tokens": {s: MAX_NEW_TOKENS.get(s, 384) for s in SCENARIOS}},
              "variants": {"shipped": "the backends as they are: the caller's OpenMP pool released "
                                      "before a worker decodes, every call's at its end",
                           "pools_kept": "the same with the release turned off"},
              "scenarios": scenarios}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(scenarios, indent=2))
    print(f"wrote {RESULTS}")


def _child(scenario: str, variant: str, every: int) -> dict:
    """One scenario under one variant, in this (fresh) process: seconds and outputs."""
    from metaaligner_chain import MetaAlignerRunnable
    from metaaligner_chain.backends import openmp

    on_transformers = scenario.startswith("transformers")
    values = held_out_inputs(every)[:TRANSFORMERS_ITEMS if on_transformers else None]
    options = {"backend": "transformers"} if on_transformers else {}
    max_new_tokens = MAX_NEW_TOKENS.get(scenario, 384)
    warm = MetaAlignerRunnable(objectives=["helpfulness"], max_new_tokens=8, **options)
    warm.invoke(values[0])  # load (and, first, build) the default outside the timing
    policy = _policy(on_transformers) if scenario.endswith("after_policy") else None

    def aligned(value: dict) -> str:
        runnable = MetaAlignerRunnable(objectives=value["objectives"],
                                       max_new_tokens=max_new_tokens, **options)
        if on_transformers:
            return "".join(chunk.get("response", "") for chunk in runnable.stream(value))
        return runnable.invoke(value)["response"]

    async def aligned_async(value: dict) -> str:
        runnable = MetaAlignerRunnable(objectives=value["objectives"],
                                       max_new_tokens=max_new_tokens, candidates=1)
        return (await runnable.ainvoke(value))["response"]

    async def timed_async() -> tuple[list[str], float]:  # one loop: its executor threads persist
        outputs, seconds = [], 0.0
        for value in values:
            start = time.perf_counter()
            outputs.append(await aligned_async(value))
            seconds += time.perf_counter() - start
        return outputs, seconds

    with _release(variant == "shipped"):
        if scenario == "async":
            outputs, seconds = asyncio.run(timed_async())
        else:
            outputs, seconds = [], 0.0
            for value in values:
                if policy is not None:  # the policy answers in this thread first (not timed)
                    policy(value["query"])
                start = time.perf_counter()
                outputs.append(aligned(value))
                seconds += time.perf_counter() - start
    return {"seconds": round(seconds, 3), "outputs": outputs, "runtimes": openmp.loaded_runtimes()}


def _policy(on_transformers: bool):
    """A policy answering in the caller's thread, 16 tokens: SmolLM2-135M-Instruct through
    llama-cpp-python, or through transformers (fp32)."""
    from metaaligner_chain.backends.llamacpp import default_threads
    from metaaligner_chain.models.defaults import default_gguf_path, default_hf_model_dir

    if on_transformers:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = default_hf_model_dir()
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder)

        def answer(query: str) -> None:
            inputs = tokenizer.apply_chat_template([{"role": "user", "content": query}],
                                                   add_generation_prompt=True, return_tensors="pt",
                                                   return_dict=True)
            with torch.inference_mode():
                model.generate(**inputs, max_new_tokens=16, do_sample=False)

        return answer
    from llama_cpp import Llama

    llama = Llama(str(default_gguf_path()), n_ctx=1024, n_threads=default_threads(),
                  rope_freq_base=0, verbose=False)
    return lambda query: llama.create_chat_completion(
        [{"role": "user", "content": query}], max_tokens=16, temperature=0.0)


@contextlib.contextmanager
def _release(on: bool):
    """The backends' pool release as shipped, or turned off (every call site goes through
    `openmp.release_idle_pool`)."""
    if on:
        yield
        return
    from metaaligner_chain.backends import openmp

    saved = openmp.release_idle_pool
    openmp.release_idle_pool = lambda: 0
    try:
        yield
    finally:
        openmp.release_idle_pool = saved


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=30, help="every K-th held-out item")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", nargs=2, metavar=("SCENARIO", "VARIANT"), help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    main()
