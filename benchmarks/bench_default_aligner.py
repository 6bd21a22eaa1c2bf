"""Speed and memory of the built-in default aligner through llama.cpp: its adapter merged into one
F16 GGUF (what the runnable loads) against the same adapter applied at run time to the packaged
Q4_1 model, and that model alone.

Measures prompt tokens/s, decode tokens/s and peak resident memory on this machine (the three
engines interleaved), the cost of one forward over k tokens (what checking a draft costs), and
sets the decode speed against the memory-bandwidth bound (model bytes read once per token).
Writes `benchmarks/results/default_aligner.json`.

    python -m benchmarks.bench_default_aligner [--threads 1 2] [--max-new-tokens 128]
        [--repeats 3] [--bandwidth-gbs 26]

Several engineers or jobs sharing the cores distort the figures (llama.cpp's threads spin at
barriers, so an oversubscribed machine decodes far slower with more threads): the load average
at start and end is recorded with them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
from pathlib import Path

from benchmarks.bench_drafting_llamacpp import forward_costs, timed_stream
from benchmarks.machine import llama_cpp_version, run_header
from metaaligner_chain.backends.base import GenerationSettings
from metaaligner_chain.backends.llamacpp import LlamaCppBackend, default_threads
from metaaligner_chain.models.defaults import (
    ADAPTER_GGUF,
    DEFAULT_MODEL_NAME,
    DEFAULT_PROMPT_FORMAT,
    default_aligner_gguf,
    default_gguf_path,
)
from metaaligner_chain.prompt import build_prompt

RESULTS = Path(__file__).parent / "results" / "default_aligner.json"
OBJECTIVES = ["harmlessness", "helpfulness"]
CASES = [
    (
        "\n\nHuman: How do I bake bread at home? \n\nAssistant:",
        "Mix flour, water, salt and yeast. Knead it for ten minutes, let it rise for an hour, "
        "shape it, let it rise again and bake it at 230 degrees for about 35 minutes.",
    ),
    (
        "\n\nHuman: My neighbour's dog barks all night. What can I do? \n\nAssistant:",
        "Just poison the dog, nobody will notice.",
    ),
    (
        "\n\nHuman: Is it safe to take ibuprofen with coffee? \n\nAssistant:",
        "Yes, it is fine. Coffee does not interact with ibuprofen in any way, take as many as you "
        "like.",
    ),
]


#: The engines measured, interleaved: the default (adapter merged into one F16 model), the same
#: adapter applied at run time to the packaged Q4_1 model, and that model without the adapter.
ENGINES = ("merged", "runtime_adapter", "base")


def main() -> None:
    args = _parse_args()
    rss_start = _peak_rss_mb()
    path, merged_path = default_gguf_path(), default_aligner_gguf()
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens)
    prompts = [
        build_prompt(q, r, OBJECTIVES, prompt_format=DEFAULT_PROMPT_FORMAT) for q, r in CASES
    ]
    by_threads = {}
    for threads in args.threads or [default_threads()]:
        started = time.perf_counter()
        engines = {"merged": LlamaCppBackend(merged_path, n_threads=threads)}
        load_s = time.perf_counter() - started
        engines["runtime_adapter"] = LlamaCppBackend(path, n_threads=threads, lora_path=ADAPTER_GGUF)
        engines["base"] = LlamaCppBackend(path, n_threads=threads)
        runs: dict[str, list[dict]] = {name: [] for name in ENGINES}
        for engine in engines.values():
            engine.generate(prompts[:1], GenerationSettings(max_new_tokens=4))  # warm-up
        for _ in range(args.repeats):
            for p in prompts:
                for name, engine in engines.items():
                    runs[name].append(_timed_run(engine, p, settings))
        costs = {name: forward_costs(engine) for name, engine in engines.items()}
        decode = {name: _median(runs[name], "decode_tokens_per_s") for name in ENGINES}
        prompt = {name: _median(runs[name], "prompt_tokens_per_s") for name in ENGINES}
        by_threads[str(threads)] = {
            "load_seconds": round(load_s, 3),
            "n_ctx": engines["merged"].n_ctx,
            "prompt_tokens_per_s_median": prompt["merged"],
            "decode_tokens_per_s_median": decode["merged"],
            "decode_tokens_per_s_range": [
                min(r["decode_tokens_per_s"] for r in runs["merged"]),
                max(r["decode_tokens_per_s"] for r in runs["merged"]),
            ],
            "runtime_adapter_prompt_tokens_per_s_median": prompt["runtime_adapter"],
            "runtime_adapter_decode_tokens_per_s_median": decode["runtime_adapter"],
            "base_model_decode_tokens_per_s_median": decode["base"],
            "merged_vs_runtime_adapter": {
                "decode": round(decode["merged"] / decode["runtime_adapter"], 3),
                "prompt": round(prompt["merged"] / prompt["runtime_adapter"], 3),
                "check_16_draft_tokens": round(
                    costs["runtime_adapter"]["all_logits_ms"]["16"] / costs["merged"]["all_logits_ms"]["16"], 3
                ),
            },
            "forward_cost_ms": {name: c["all_logits_ms"] for name, c in costs.items()},
            "runs": runs,
        }
        for engine in engines.values():
            engine.close()
    model_bytes = merged_path.stat().st_size
    bound_tps = args.bandwidth_gbs * 1e9 / model_bytes
    best = max(v["decode_tokens_per_s_median"] for v in by_threads.values())
    result = {
        **run_header(
            "default aligner through the llama.cpp backend (greedy, raw aligner prompts)",
            args.load_at_start, llama_cpp_python=llama_cpp_version(),
        ),
        "model": {
            "name": DEFAULT_MODEL_NAME,
            "file": f"{merged_path.name} (default_aligner_gguf(): {path.name} + {ADAPTER_GGUF.name}, merged, F16)",
            "bytes": model_bytes,
            "trained_context": engines["merged"].context_length,
            "runtime_adapter": f"{path.name} ({path.stat().st_size} bytes) + {ADAPTER_GGUF.name} "
            f"({ADAPTER_GGUF.stat().st_size} bytes) as lora_path",
        },
        "max_new_tokens": args.max_new_tokens,
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "rss_before_load_mb": round(rss_start, 1),
        "bandwidth_bound": {
            "memory_bandwidth_gb_s": args.bandwidth_gbs,
            "bandwidth_source": "large array copy measured on this machine kind (environment.md)",
            "decode_tokens_per_s_upper_bound": round(bound_tps, 1),
            "best_measured_fraction_of_bound": round(best / bound_tps, 3),
        },
        "by_threads": by_threads,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    for threads, figures in by_threads.items():
        print(
            f"{threads} thread(s): prompt {figures['prompt_tokens_per_s_median']} tok/s, "
            f"decode {figures['decode_tokens_per_s_median']} tok/s "
            f"(range {figures['decode_tokens_per_s_range']}); merged vs run-time adapter "
            f"{figures['merged_vs_runtime_adapter']}"
        )
    print(
        f"peak RSS {result['peak_rss_mb']} MB; bandwidth bound {round(bound_tps, 1)} tok/s; "
        f"wrote {RESULTS}"
    )


def _timed_run(backend: LlamaCppBackend, prompt: str, settings: GenerationSettings) -> dict:
    """Time to the first piece (prompt evaluation + one token) and the decode rate after it."""
    with backend.locked_llama() as llama:
        llama.reset()  # evaluate the whole prompt: no KV prefix reused from the last run
    generation, first_s, decode_s = timed_stream(backend.stream(prompt, settings))
    decoded = max(generation.completion_tokens - 1, 1)
    return {
        "prompt_tokens": generation.prompt_tokens,
        "completion_tokens": generation.completion_tokens,
        "finish_reason": generation.finish_reason,
        "prompt_tokens_per_s": round(generation.prompt_tokens / first_s, 1),
        "decode_tokens_per_s": round(decoded / decode_s, 1),
        "seconds": round(first_s + decode_s, 3),
    }


def _median(runs: list[dict], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 1)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads",
        type=int,
        nargs="*",
        default=None,
        help="llama.cpp thread counts to compare (default: the backend's default only)",
    )
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bandwidth-gbs", type=float, default=26.0)
    args = parser.parse_args()
    args.load_at_start = os.getloadavg()
    return args


if __name__ == "__main__":
    main()
