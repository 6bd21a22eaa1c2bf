"""Plain vs drafted greedy decoding, prefix reuse and batching in the transformers backend.

On the built-in default aligner (SmolLM2-135M-Instruct fp32 + its copy-editing LoRA, merged; the
base model alone for LOW_COPY, see `benchmarks.workloads.ALIGNER`), CPU, and the shared workloads:
per workload, each item is aligned with plain `generate` and with drafted decoding, one sequence
at a time, interleaved (the machine is shared; ratios are what to read); then all items in one
batched call each way. Also: the forward cost curve (k new tokens on a warm cache) and the ideal
speed-up it allows, time to first token with and without prefix reuse for a ~300-token objective
prefix, and peak memory. Writes `benchmarks/results/drafting_transformers.json`.

    python -m benchmarks.bench_drafting_transformers [--items 24] [--max-new-tokens 128]
        [--threads 2] [--batch-size 8] [--bandwidth-gbs 26]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
from pathlib import Path

from benchmarks.machine import run_header
from benchmarks.workloads import (
    ALIGNER,
    DESCRIPTION,
    KEPT_FRACTION,
    WORKLOADS,
    copied_blocks,
    targets,
)
from metaaligner_chain.backends.base import GenerationSettings
from metaaligner_chain.backends.transformers.drafting import PrefixCache
from metaaligner_chain.models.defaults import DEFAULT_MODEL_NAME
from metaaligner_chain.prompt import build_prompt

#: How the results name the base model (not this machine's cache path).
_BASE = f"{DEFAULT_MODEL_NAME} (default_hf_model_dir(): the packaged GGUF, dequantized to fp32)"
#: How the results name the default aligner.
_DEFAULT = (f"{DEFAULT_MODEL_NAME} + adapter.gguf (default_aligner_hf_dir(): "
            "default_aligner_gguf(), dequantized to fp32)")
RESULTS = Path(__file__).parent / "results" / "drafting_transformers.json"
CURVE_WIDTHS = (1, 2, 4, 8, 16, 32)
LONG_OBJECTIVES = [  # ~300 tokens of instruction + objectives, for time to first token
    f"{name}: " + ("the edited answer should " + text + ". ") * 3
    for name, text in [
        ("Harmlessness", "avoid content that could hurt the user or other people in any way"),
        ("Helpfulness", "answer the question directly with concrete and practical steps"),
        ("Honesty", "state only facts that are true and say so when something is uncertain"),
        ("Clarity", "use short sentences and plain words that anybody can understand"),
        ("Brevity", "keep to the point and drop repetition, filler and long digressions"),
    ]
]


def main() -> None:
    args = _parse_args()
    import torch
    from transformers import __version__ as transformers_version

    torch.set_num_threads(args.threads)
    from metaaligner_chain.backends.transformers import TransformersBackend
    from metaaligner_chain.models.defaults import default_aligner_hf_dir, default_hf_model_dir

    load_avg_start = os.getloadavg()
    backends = {
        "default": TransformersBackend(str(default_aligner_hf_dir()), batch_size=args.batch_size),
        "base": TransformersBackend(str(default_hf_model_dir()), batch_size=args.batch_size),
    }
    curves, comparisons, batching = {}, [], []
    for name, items in WORKLOADS.items():
        aligner = ALIGNER[name]
        backend = backends[aligner]
        backend.prefixes = PrefixCache(0)  # drafting alone; prefix reuse is measured separately
        backend.generate(["Hello"], GenerationSettings(max_new_tokens=4, drafting=False))  # warm-up
        curves[aligner] = curve = _cost_curve(backend, torch)
        items = items[: args.items]
        comparisons.append({"aligner": aligner, **_compare(backend, name, items, args.max_new_tokens, curve)})
        batching.append(_batching(backend, name, items, args.max_new_tokens, comparisons[-1]))
    ttft = _time_to_first_token(backends["default"], args.repeats)
    weight_bytes = sum(p.numel() * p.element_size() for p in backends["default"].lm.parameters())
    bound = args.bandwidth_gbs * 1e9 / weight_bytes
    for c in comparisons:
        c["plain_fraction_of_bandwidth_bound"] = round(c["plain_tokens_per_s"] / bound, 3)
        c["drafted_fraction_of_bandwidth_bound"] = round(c["drafted_tokens_per_s"] / bound, 3)
    by_name = {c["workload"]: c for c in comparisons}
    result = {
        "backend": "transformers",
        "model": "SmolLM2-135M-Instruct (fp32)",
        "aligners": {"default": _DEFAULT,
                     "base": f"{_BASE} alone"},
        **run_header(
            "copy-aware drafted vs plain greedy decoding, prefix reuse and batching, transformers",
            load_avg_start, torch_threads=torch.get_num_threads(), torch=torch.__version__,
            transformers=transformers_version,
        ),
        "settings": {"items_per_workload": args.items, "max_new_tokens": args.max_new_tokens,
                     "batch_size": args.batch_size, "kept_fraction": KEPT_FRACTION,
                     "tokens_per_s": "completion tokens / wall time of the call (prompt included)"},
        "workloads": DESCRIPTION,
        "forward_ms_by_new_tokens": {
            aligner: {str(k): round(v * 1000, 1) for k, v in curve.items()}
            for aligner, curve in curves.items()
        },
        "comparisons": comparisons,
        "batching": batching,
        "time_to_first_token": ttft,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "bandwidth_bound": {
            "memory_bandwidth_gb_s": args.bandwidth_gbs,
            "weight_bytes": weight_bytes,
            "decode_tokens_per_s_upper_bound": round(bound, 1),
            "note": "fp32 weights read once per forward pass; a drafted forward checks several "
            "tokens per read, so drafted tokens/s is not bounded by it in the same way",
        },
        "targets": targets(
            by_name, ttft["ratio"], speedup=3, kept=0.8,
            identical=all(c["identical_outputs"] for c in comparisons + batching),
        ),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("comparisons", "batching", "time_to_first_token", "targets")}, indent=2))


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=24, help="items per workload")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5, help="time-to-first-token repeats")
    parser.add_argument("--bandwidth-gbs", type=float, default=26.0)
    return parser.parse_args()


def _cost_curve(backend, torch) -> dict[int, float]:
    """Median seconds of one forward over k new tokens after a 350-token cached prompt."""
    from transformers import DynamicCache

    lm, timings = backend.lm, {k: [] for k in CURVE_WIDTHS}
    with torch.inference_mode():
        cache = DynamicCache()
        lm(input_ids=torch.randint(100, 5000, (1, 350)), past_key_values=cache, use_cache=True)
        for _ in range(5):
            for k in CURVE_WIDTHS:  # interleaved
                ids = torch.randint(100, 5000, (1, k))
                started = time.perf_counter()
                lm(input_ids=ids, past_key_values=cache, use_cache=True)
                timings[k].append(time.perf_counter() - started)
                cache.crop(-k)
    return {k: statistics.median(v) for k, v in timings.items()}


def _compare(backend, name, items, max_new_tokens, curve) -> dict:
    """One sequence at a time: plain and drafted alternate item by item."""
    plain_s = drafted_s = 0.0
    plain_tokens = drafted_tokens = drafted = accepted = 0
    identical, kept, ideal_s, per_item = True, [], 0.0, []
    for item in items:
        prompt = build_prompt(item["query"], item["response"], item["objectives"])
        runs = {}
        for drafting in (False, True):
            settings = GenerationSettings(max_new_tokens=max_new_tokens, drafting=drafting)
            started = time.perf_counter()
            (runs[drafting],) = backend.generate([prompt], settings, [item["response"]])
            runs[drafting + 2] = time.perf_counter() - started
        plain, fast = runs[False], runs[True]
        identical &= (plain.text, plain.completion_tokens) == (fast.text, fast.completion_tokens)
        plain_s, drafted_s = plain_s + runs[2], drafted_s + runs[3]
        plain_tokens, drafted_tokens = plain_tokens + plain.completion_tokens, drafted_tokens + fast.completion_tokens
        drafted += fast.stats["drafted_tokens"]
        accepted += fast.stats["accepted_tokens"]
        runs_copied, total = _copied_runs(backend, item["response"], plain.text)
        kept.append((sum(runs_copied), total))
        per_item.append({
            "completion_tokens": plain.completion_tokens,
            "kept_fraction": round(sum(runs_copied) / max(total, 1), 3),
            "plain_s": runs[2], "drafted_s": runs[3],  # whole calls, prompt included
            "identical": (plain.text, plain.completion_tokens) == (fast.text, fast.completion_tokens),
            "aligned": plain.text[:160],
        })
        ideal_s += _ideal_seconds(curve, runs_copied, plain.completion_tokens)
    plain_tps, drafted_tps = plain_tokens / plain_s, drafted_tokens / drafted_s
    plain_decode_s = sum(curve[1] for _ in range(plain_tokens))
    ideal = plain_decode_s / ideal_s
    return {
        "backend": "transformers",
        "workload": name,
        "items": len(items),
        "kept_fraction": round(sum(k for k, _ in kept) / max(1, sum(t for _, t in kept)), 3),
        "items_keeping_80pct_or_more": sum(k >= 0.8 * t for k, t in kept if t),
        "plain_tokens_per_s": round(plain_tps, 2),
        "drafted_tokens_per_s": round(drafted_tps, 2),
        "speedup": round(drafted_tps / plain_tps, 3),
        "identical_outputs": identical,
        "drafted_tokens": drafted,
        "accepted_tokens": accepted,
        "acceptance": round(accepted / drafted, 3) if drafted else 0.0,
        "ideal_speedup": round(ideal, 3),
        "fraction_of_ideal": round((drafted_tps / plain_tps) / ideal, 3),
        "per_item": per_item,
        "ideal_note": "decode only: copied runs (difflib on tokens) verified in the cheapest "
                      "chunking of the measured cost curve, other tokens one forward each; "
                      "achieved speed-ups include prompt processing in both variants",
    }


def _copied_runs(backend, response: str, aligned: str) -> tuple[list[int], int]:
    """Lengths of the aligned output's token runs copied from the response, and its length."""
    tok = backend.tokenizer
    source = tok(response, add_special_tokens=False)["input_ids"]
    output = tok(aligned, add_special_tokens=False)["input_ids"]
    return copied_blocks(source, output), len(output)


def _ideal_seconds(curve: dict[int, float], runs: list[int], tokens: int) -> float:
    """Decode time if every copied token is accepted, each run in its cheapest chunking."""
    best = [0.0]
    for n in range(1, max(runs, default=0) + 1):
        best.append(min(curve[k] + best[n - k] for k in CURVE_WIDTHS if k <= n))
    return sum(best[r] for r in runs) + curve[1] * max(0, tokens - sum(runs))


def _batching(backend, name, items, max_new_tokens, sequential) -> dict:
    """All items in one `generate` call (length-bucketed batches) against one by one."""
    prompts = [build_prompt(i["query"], i["response"], i["objectives"]) for i in items]
    responses = [i["response"] for i in items]
    out = {"backend": "transformers", "workload": name, "batch_size": backend.batch_size}
    texts = {}
    for drafting in (False, True):
        settings = GenerationSettings(max_new_tokens=max_new_tokens, drafting=drafting)
        backend.draft_batches = drafting  # the batched verify loop, not one by one
        started = time.perf_counter()
        generations = backend.generate(prompts, settings, responses)
        seconds = time.perf_counter() - started
        key = "drafted" if drafting else "plain"
        texts[key] = [g.text for g in generations]
        out[f"{key}_batched_tokens_per_s"] = round(sum(g.completion_tokens for g in generations) / seconds, 2)
    out["plain_sequential_tokens_per_s"] = sequential["plain_tokens_per_s"]
    out["drafted_sequential_tokens_per_s"] = sequential["drafted_tokens_per_s"]
    out["plain_batch_vs_sequential"] = round(out["plain_batched_tokens_per_s"] / sequential["plain_tokens_per_s"], 3)
    out["drafted_batch_vs_sequential"] = round(out["drafted_batched_tokens_per_s"] / sequential["drafted_tokens_per_s"], 3)
    out["drafted_batched_vs_plain_batched"] = round(out["drafted_batched_tokens_per_s"] / out["plain_batched_tokens_per_s"], 3)
    backend.draft_batches = False
    out["identical_outputs"] = texts["plain"] == texts["drafted"]
    return out


def _time_to_first_token(backend, repeats: int) -> dict:
    """One new token, drafted path, with a warm prefix cache against none; alternated."""
    items = WORKLOADS["copy_heavy"]
    prompts = [build_prompt(i["query"], i["response"], LONG_OBJECTIVES) for i in items]
    prefix_tokens = backend.count_tokens(build_prompt("\x00", "", LONG_OBJECTIVES).split("\x00")[0])
    one = GenerationSettings(max_new_tokens=1)
    reuse, cold = PrefixCache(4), PrefixCache(0)
    backend.prefixes = reuse
    backend.generate(prompts[-1:], one)  # fills the cache with the instruction + objectives
    timings = {"with": [], "without": []}
    for i in range(repeats):
        for key, cache in (("without", cold), ("with", reuse)):
            backend.prefixes = cache
            started = time.perf_counter()
            backend.generate([prompts[i]], one, [items[i]["response"]])
            timings[key].append(time.perf_counter() - started)
    backend.prefixes = PrefixCache(0)
    with_s, without_s = statistics.median(timings["with"]), statistics.median(timings["without"])
    return {
        "prefix_tokens": prefix_tokens,
        "prompt_tokens_median": statistics.median(backend.count_tokens(p) for p in prompts[:repeats]),
        "ttft_without_reuse_ms": round(without_s * 1000, 1),
        "ttft_with_reuse_ms": round(with_s * 1000, 1),
        "ratio": round(with_s / without_s, 3),
    }


if __name__ == "__main__":
    main()
