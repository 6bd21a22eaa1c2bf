"""Speed and memory of the built-in default aligner through llama.cpp: the file the runnable serves
(its adapter merged into one F16 GGUF, then quantized to Q8_0) against that F16 merge, the same
adapter applied at run time to the packaged Q4_1 model, and that model alone.

Measures prompt tokens/s, decode tokens/s and peak resident memory on this machine (the four
engines interleaved), the cost of one forward over k tokens (what checking a draft costs), and
sets each file's decode speed against its memory-bandwidth bound (its bytes read once per token).
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
    default_aligner_light,
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


#: The engines measured, interleaved: the default as served (the adapter merged, then Q8_0), the
#: F16 merge it is quantized from, the same adapter applied at run time to the packaged Q4_1
#: model, and that model without the adapter.
ENGINES = ("served", "merged", "runtime_adapter", "base")


def main() -> None:
    args = _parse_args()
    rss_start = _peak_rss_mb()
    path, merged_path, served_path = default_gguf_path(), default_aligner_gguf(), default_aligner_light()
    # What each engine reads per token: the run-time adapter path reads the adapter as well.
    files = {"served": [served_path], "merged": [merged_path], "runtime_adapter": [path, ADAPTER_GGUF],
             "base": [path]}
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens)
    prompts = [
        build_prompt(q, r, OBJECTIVES, prompt_format=DEFAULT_PROMPT_FORMAT) for q, r in CASES
    ]
    by_threads = {}
    for threads in args.threads or [default_threads()]:
        started = time.perf_counter()
        engines = {"served": LlamaCppBackend(served_path, n_threads=threads)}
        load_s = time.perf_counter() - started
        engines["merged"] = LlamaCppBackend(merged_path, n_threads=threads)
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
        by_threads[str(threads)] = {
            "served_load_seconds": round(load_s, 3),
            "n_ctx": engines["served"].n_ctx,
            "decode_tokens_per_s_median": decode,
            "decode_tokens_per_s_range": {
                name: [min(r["decode_tokens_per_s"] for r in runs[name]),
                       max(r["decode_tokens_per_s"] for r in runs[name])] for name in ENGINES
            },
            "prompt_tokens_per_s_median": {
                name: _median(runs[name], "prompt_tokens_per_s") for name in ENGINES
            },
            "share_of_bound": {
                name: round(decode[name] / _bound(files[name], args.bandwidth_gbs), 3)
                for name in ENGINES
            },
            "served_vs_merged_decode": round(decode["served"] / decode["merged"], 3),
            "forward_cost_ms": {name: c["all_logits_ms"] for name, c in costs.items()},
            "runs": runs,
        }
        for engine in engines.values():
            engine.close()
    result = {
        **run_header(
            "default aligner through the llama.cpp backend (greedy, raw aligner prompts)",
            args.load_at_start, llama_cpp_python=llama_cpp_version(),
        ),
        "model": {
            "name": DEFAULT_MODEL_NAME,
            "files": {
                "served": f"{served_path.name} (default_aligner_light(): the merge, Q8_0)",
                "merged": f"{merged_path.name} (default_aligner_gguf(): {path.name} + "
                          f"{ADAPTER_GGUF.name}, merged, F16)",
                "runtime_adapter": f"{path.name} + {ADAPTER_GGUF.name} as lora_path",
                "base": f"{path.name}",
            },
            "bytes": {name: _bytes(paths) for name, paths in files.items()},
            "adapter_bytes": ADAPTER_GGUF.stat().st_size,
            "trained_context": engines["served"].context_length,
        },
        "max_new_tokens": args.max_new_tokens,
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "rss_before_load_mb": round(rss_start, 1),
        "bandwidth_bound": {
            "memory_bandwidth_gb_s": args.bandwidth_gbs,
            "bandwidth_source": "large array copy measured on this machine kind (environment.md)",
            "decode_tokens_per_s_upper_bound": {
                name: round(_bound(paths, args.bandwidth_gbs), 1) for name, paths in files.items()
            },
        },
        "by_threads": by_threads,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    for threads, figures in by_threads.items():
        print(
            f"{threads} thread(s): decode tok/s {figures['decode_tokens_per_s_median']}, prompt "
            f"tok/s {figures['prompt_tokens_per_s_median']}, share of bound "
            f"{figures['share_of_bound']}"
        )
    print(f"peak RSS {result['peak_rss_mb']} MB; wrote {RESULTS}")


def _bytes(paths: list[Path]) -> int:
    return sum(path.stat().st_size for path in paths)


def _bound(paths: list[Path], bandwidth_gbs: float) -> float:
    """Decode tokens/s if every token read the files' bytes once at `bandwidth_gbs`."""
    return bandwidth_gbs * 1e9 / _bytes(paths)


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
