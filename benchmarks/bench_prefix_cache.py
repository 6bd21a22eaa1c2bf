"""Time to first token with the llama.cpp backend's KV snapshots (`PrefixCache`), with
llama-cpp-python's `LlamaRAMCache`, and with neither, on the built-in default aligner.

`Llama.set_cache` is read only by `Llama.create_completion`; the backend decodes with
`Llama.generate` and its own drafted loop, so here the RAM cache is driven as create_completion
drives it: before a call, the saved state sharing the longest prefix with the prompt is loaded
when it shares more than the live KV cache; after the call, the whole state is saved under the
prompt and completion tokens. Every variant decodes through the same backend and settings:

- `cold`: the KV cache is cleared before each call, so the whole prompt is evaluated;
- `previous_call`: `prefix_cache=0`, llama-cpp-python's own reuse of the previous call's prefix;
- `ram_cache`: `prefix_cache=0` and a `LlamaRAMCache` of its default capacity (2 GiB);
- `snapshots`: the backend's default `prefix_cache=4`.

Two call patterns over the ~300-token objective sets of `bench_drafting_llamacpp`: `shared`
(every call under one objective set; only the query and the answer differ) and `alternating`
(two objective sets in turn). Each pattern gets fresh backends and its own exchanges; the first
call of each objective set is a warm-up for every variant and is not timed. Variants take turns
going first on each call. Writes `benchmarks/results/prefix_cache.json`.

    python -m benchmarks.bench_prefix_cache [--calls 8] [--max-new-tokens 8] [--threads 1]

llama.cpp's threads spin at barriers, so on a machine shared with other work pass `--threads 1`:
more threads than free cores make each forward wait on preempted threads, and that noise swamps
what is measured here (how much of each prompt is evaluated, and what saving and loading cost).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from llama_cpp import Llama, LlamaRAMCache

from benchmarks.bench_drafting_llamacpp import LONG_OBJECTIVES, timed_stream
from benchmarks.machine import llama_cpp_version, run_header
from benchmarks.workloads import COPY_HEAVY
from metaaligner_chain.backends.base import GenerationSettings
from metaaligner_chain.backends.llamacpp import LlamaCppBackend, default_threads
from metaaligner_chain.models.defaults import default_aligner_gguf
from metaaligner_chain.prompt import build_prompt, prompt_prefix

RESULTS = Path(__file__).parent / "results" / "prefix_cache.json"
VARIANTS = ("cold", "previous_call", "ram_cache", "snapshots")
#: The objective set (a key of `LONG_OBJECTIVES`) of call i is PATTERNS[name][i % 2].
PATTERNS = {"shared": "aa", "alternating": "ab"}


def main() -> None:
    args = _parse_args()
    if 2 * args.calls > len(COPY_HEAVY):
        raise SystemExit(f"--calls is {args.calls}; at most {len(COPY_HEAVY) // 2} exchanges a pattern.")
    patterns = {}
    for n, (name, sets) in enumerate(PATTERNS.items()):
        items = COPY_HEAVY[n * args.calls : (n + 1) * args.calls]
        prompts = [
            build_prompt(item["query"], item["response"], LONG_OBJECTIVES[sets[i % 2]])
            for i, item in enumerate(items)
        ]
        patterns[name] = _measure(prompts, len(set(sets)), args.max_new_tokens, args.threads)
    result = {
        **run_header(
            "time to first token: KV snapshots vs LlamaRAMCache vs none, llama.cpp",
            args.load_at_start, n_threads=args.threads, llama_cpp_python=llama_cpp_version(),
        ),
        "model": f"{default_aligner_gguf().name} (default_aligner_gguf())",
        "settings": {"calls_per_pattern": args.calls, "max_new_tokens": args.max_new_tokens},
        "variants": {
            "cold": "KV cache cleared before each call",
            "previous_call": "prefix_cache=0: llama-cpp-python reuses the previous call's prefix",
            "ram_cache": "prefix_cache=0 + LlamaRAMCache(2 GiB), looked up before and saved "
            "after each call as Llama.create_completion does",
            "snapshots": "prefix_cache=4 (the backend's default)",
        },
        "ttft": "seconds from the call (cache lookup included) to its first piece of text, median",
        "patterns": patterns,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    for name, p in patterns.items():
        print(f"{name}: TTFT ms {p['ttft_ms']}; RAM cache save {p['ram_cache_save_ms']} ms; "
              f"identical {p['identical_outputs']}")
    print(f"wrote {RESULTS}")


def _measure(prompts: list[str], warm_up: int, max_new_tokens: int, threads: int) -> dict:
    """Every prompt through every variant; medians over the calls after the warm-up."""
    backends = {
        v: LlamaCppBackend(
            default_aligner_gguf(), n_threads=threads, prefix_cache=4 if v == "snapshots" else 0
        )
        for v in VARIANTS
    }
    ram = LlamaRAMCache()
    settings = GenerationSettings(max_new_tokens=max_new_tokens)
    ttft: dict[str, list[float]] = {v: [] for v in VARIANTS}
    texts: dict[str, list[str]] = {v: [] for v in VARIANTS}
    saves, loads = [], 0
    for i, prompt in enumerate(prompts):
        for variant in VARIANTS[i % 4 :] + VARIANTS[: i % 4]:
            backend = backends[variant]
            if variant == "cold":
                with backend.locked_llama() as llama:
                    llama.reset()
            started = time.perf_counter()
            if variant == "ram_cache":
                loads += _load_longest(backend, ram, prompt)
            lookup_s = time.perf_counter() - started
            generation, first_s, _ = timed_stream(backend.stream(prompt, settings))
            if variant == "ram_cache":
                saves.append(_save(backend, ram))
            texts[variant].append(generation.text)
            if i >= warm_up:
                ttft[variant].append(lookup_s + first_s)
    with backends["snapshots"].locked_llama() as llama:
        preamble = len(llama.tokenize(prompt_prefix(LONG_OBJECTIVES["a"]).encode()))
        prompt_tokens = [len(llama.tokenize(p.encode())) for p in prompts[warm_up:]]
    restores = backends["snapshots"].snapshot_restores
    for backend in backends.values():
        backend.close()
    median_ms = {v: round(1000 * statistics.median(t), 1) for v, t in ttft.items()}
    return {
        "calls_timed": len(prompts) - warm_up,
        "preamble_tokens": preamble,
        "prompt_tokens_median": statistics.median(prompt_tokens),
        "ttft_ms": median_ms,
        "ttft_vs_cold": {v: round(ms / median_ms["cold"], 3) for v, ms in median_ms.items()},
        "ram_cache_save_ms": round(1000 * statistics.median(saves), 1),
        "ram_cache_loads": loads,
        "ram_cache_entries": len(ram.cache_state),
        "ram_cache_mb": round(ram.cache_size / 1e6, 1),
        "snapshot_restores": restores,
        "identical_outputs": len({tuple(t) for t in texts.values()}) == 1,
    }


def _load_longest(backend: LlamaCppBackend, cache: LlamaRAMCache, prompt: str) -> bool:
    """Load the saved state sharing the longest prefix with `prompt` if it shares more than the
    live KV cache (as `Llama.create_completion` does); whether one was loaded."""
    with backend.locked_llama() as llama:
        tokens = llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        try:
            state = cache[tokens]
        except KeyError:
            return False
        saved = Llama.longest_token_prefix(state.input_ids[: state.n_tokens].tolist(), tokens)
        live = Llama.longest_token_prefix(llama.input_ids[: llama.n_tokens].tolist(), tokens)
        if saved <= live:
            return False
        llama.load_state(state)
        return True


def _save(backend: LlamaCppBackend, cache: LlamaRAMCache) -> float:
    """Save the whole state under its tokens (as `Llama.create_completion` does); seconds taken."""
    started = time.perf_counter()
    with backend.locked_llama() as llama:
        cache[llama.input_ids[: llama.n_tokens].tolist()] = llama.save_state()
    return time.perf_counter() - started


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=8, help="calls per pattern, warm-ups included")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--threads", type=int, default=default_threads(), help="llama.cpp threads")
    args = parser.parse_args()
    args.load_at_start = os.getloadavg()
    return args


if __name__ == "__main__":
    main()
