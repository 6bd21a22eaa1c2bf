"""Drafted vs plain greedy decoding on transformers: the backend beside `generate`'s own prompt
lookup (`prompt_lookup_num_tokens`), same prompts, one run; prefix reuse and batching.

On the built-in default aligner (SmolLM2-135M-Instruct fp32 + its copy-editing LoRA, merged; the
base model alone for LOW_COPY, see `benchmarks.workloads.ALIGNER`), CPU. Per workload, each item
is aligned one sequence at a time by every variant in turn (the order rotating item by item):
- `plain`: `generate`, greedy;
- `stock_<n>`: `generate(prompt_lookup_num_tokens=n)` (10 is the value transformers documents;
  `--lookup` picks them), greedy;
- `backend`: `TransformersBackend.generate` with `drafting=True` and prefix reuse off (drafting
  alone);
- `backend_prefix`: the same with the backend's prefix reuse on, as the runnable runs it (when
  the backend has prefix reuse).
Whole calls are timed (prompt included); outputs are checked identical to `plain`;
`vs_best_peer` = backend ÷ the best stock variant. Then all items of the workload in batches:
plain `generate` batched and the backend's greedy batch path, beside the per-item figures (stock
prompt lookup runs one sequence at a time). Also the forward cost curve and the ideal speed-up
it allows, time to first token with and without prefix reuse, and peak memory.
transformers decodes ~15 tokens/s here, so each workload is a documented fixed subset
(`--items`, and every `--every`-th held-out item). Writes (merges by workload into)
`benchmarks/results/drafting_transformers.json`.

    python -m benchmarks.bench_drafting_transformers [--workloads copy_heavy low_copy heldout]
        [--items 12] [--every 12] [--lookup 10 N] [--threads 2] [--batch-size 8] [--no-ttft]
        [--device cuda --dtype bfloat16 --bandwidth-gbs 4300 --out benchmarks/results/drafting_transformers_gpu.json]

The last line is the GPU run (issue 17 item 7): its own results file, absolute tokens/s; a
forward is timed after `torch.cuda.synchronize()`.
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
    workload,
)
from metaaligner_chain.backends.base import Generation, GenerationSettings
from metaaligner_chain.models.defaults import DEFAULT_MODEL_NAME
from metaaligner_chain.prompt import build_prompt

#: How the results name the base model (not this machine's cache path).
_BASE = f"{DEFAULT_MODEL_NAME} (default_hf_model_dir(): the packaged GGUF, dequantized to fp32)"
#: How the results name the default aligner.
_DEFAULT = (f"{DEFAULT_MODEL_NAME} + adapter.gguf (default_aligner_hf_dir(): "
            "default_aligner_gguf(), dequantized to fp32)")
RESULTS = Path(__file__).parent / "results" / "drafting_transformers.json"
CURVE_WIDTHS = (1, 2, 4, 8, 16, 32)
#: New tokens allowed per workload: the held-out answers run to 184 tokens, so rewrites end at EOS.
MAX_NEW_TOKENS = {"copy_heavy": 128, "low_copy": 128, "heldout": 256}
#: `prompt_lookup_num_tokens` of the stock peers: the documented 10 and the value tuned here.
LOOKUP = (10, 32)
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
    dirs = {"default": default_aligner_hf_dir, "base": default_hf_model_dir}
    backends = {}
    curves, comparisons, batching = {}, [], []
    for name in args.workloads:
        aligner = ALIGNER[name]
        if aligner not in backends:
            backends[aligner] = TransformersBackend(str(dirs[aligner]()), batch_size=args.batch_size,
                                                    device=args.device, dtype=args.dtype)
        backend = backends[aligner]
        _no_prefix_reuse(backend)  # drafting alone; prefix reuse is timed separately
        backend.generate(["Hello"], GenerationSettings(max_new_tokens=4, drafting=False))  # warm-up
        curves[aligner] = curve = _cost_curve(backend, torch)
        items = workload(name, args.every)[: args.items]
        max_new_tokens = MAX_NEW_TOKENS[name]
        comparison = _compare(backend, name, items, max_new_tokens, curve, args.lookup)
        plain = comparison.pop("_plain")
        for row in comparison["per_item"]:
            del row["variants"]["plain"]["text"]
        comparisons.append({"aligner": aligner, "max_new_tokens": max_new_tokens, **comparison})
        print(_summary(comparison), flush=True)
        batching.append(_batching(backend, name, items, max_new_tokens, comparison, plain))
        print(json.dumps(batching[-1]), flush=True)
    default = backends.get("default") or TransformersBackend(
        str(default_aligner_hf_dir()), device=args.device, dtype=args.dtype)
    device = default.device
    weight_bytes = sum(p.numel() * p.element_size() for p in default.lm.parameters())
    bound = args.bandwidth_gbs * 1e9 / weight_bytes
    for c in comparisons:
        for v in c["variants"].values():
            v["fraction_of_bandwidth_bound"] = round(v["tokens_per_s"] / bound, 3)
    header = run_header(
        "drafted vs plain greedy decoding: the backend beside generate's prompt lookup, prefix "
        "reuse and batching, transformers",
        load_avg_start, torch_threads=torch.get_num_threads(), torch=torch.__version__,
        transformers=transformers_version, device=device,
        **({"gpu": torch.cuda.get_device_name()} if device.startswith("cuda") else {}),
    )
    result = _merge(args.out, header, comparisons, batching)
    result.update({
        "backend": "transformers",
        "model": f"SmolLM2-135M-Instruct ({str(default.dtype).removeprefix('torch.')} on {device})",
        "aligners": {"default": _DEFAULT, "base": f"{_BASE} alone"},
        "variants": {
            "plain": "model.generate, greedy",
            "stock_<n>": "model.generate(prompt_lookup_num_tokens=n), greedy (max_matching_ngram_size 2)",
            "backend": f"TransformersBackend.generate, drafting=True, one prompt, prefix reuse "
            f"off: {_backend_drafting()}",
            "backend_prefix": "the same with the backend's prefix reuse on (PrefixCache("
            f"{default.prefixes.size}) as the backend makes it), as the runnable runs it",
        },
        "settings": {"items": args.items, "heldout_every": args.every, "batch_size": args.batch_size,
                     "kept_fraction": KEPT_FRACTION,
                     "tokens_per_s": "completion tokens / wall time of the call (prompt included)",
                     "vs_best_peer": "backend tokens/s / the best stock variant's"},
        "workloads": DESCRIPTION,
        "bandwidth_bound": {
            "memory_bandwidth_gb_s": args.bandwidth_gbs,
            "weight_bytes": weight_bytes,
            "decode_tokens_per_s_upper_bound": round(bound, 1),
            "note": "the weights read once per forward pass; a drafted forward checks several "
            "tokens per read, so drafted tokens/s is not bounded by it in the same way",
        },
    })
    result.setdefault("forward_ms_by_new_tokens", {}).update({
        aligner: {str(k): round(v * 1000, 1) for k, v in curve.items()}
        for aligner, curve in curves.items()
    })
    if not args.no_ttft:
        result["time_to_first_token"] = _time_to_first_token(default, args.repeats)
    if not result.get("time_to_first_token"):
        result.pop("time_to_first_token", None)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if device.startswith("cuda"):
        result["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    by_name = {c["workload"]: c for c in result["comparisons"]}
    ttft = (result.get("time_to_first_token") or {}).get("ratio")
    result["targets"] = targets(by_name, ttft, speedup=3, kept=0.8)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["targets"]), f"\nwrote {args.out}")


def _merge(path: Path, header: dict, comparisons: list[dict], batching: list[dict]) -> dict:
    """This run's records, and those of workloads it did not run kept from `path` (each record
    carries its own date and command)."""
    run = {"date": header["date"], "command": header["command"],
           "load_average": [header["machine"]["load_average_at_start"],
                            header["machine"]["load_average_at_end"]]}
    for record in comparisons + batching:
        record["run"] = run
    old = json.loads(path.read_text()) if path.is_file() else {}
    names = {c["workload"] for c in comparisons}
    order = list(ALIGNER)

    def merged(key: str, new: list[dict]) -> list[dict]:
        kept = [c for c in old.get(key, []) if "run" in c and c["workload"] not in names]
        return sorted(kept + new, key=lambda c: order.index(c["workload"]))

    keep = {k: old[k] for k in ("forward_ms_by_new_tokens", "time_to_first_token") if k in old}
    return {**header, **keep, "comparisons": merged("comparisons", comparisons),
            "batching": merged("batching", batching)}


def _no_prefix_reuse(backend) -> None:
    from metaaligner_chain.backends.transformers import backend as module

    if hasattr(backend, "prefixes"):
        backend.prefixes = type(backend.prefixes)(0)
    elif hasattr(module, "PrefixCache"):
        backend.prefixes = module.PrefixCache(0)


def _backend_drafting() -> str:
    """What `drafting=True` runs in the backend at this commit for one prompt."""
    from metaaligner_chain.backends.transformers import backend as module

    lookup = getattr(module, "LOOKUP_TOKENS", None)
    if lookup:
        return f"generate(prompt_lookup_num_tokens={lookup})"
    return "the package's own copy-aware drafting loop (CopyDrafter, drafting.decode_greedy)"


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=list(ALIGNER), choices=list(ALIGNER))
    parser.add_argument("--items", type=int, default=12, help="first N items of each workload")
    parser.add_argument("--every", type=int, default=12, help="every K-th held-out item")
    parser.add_argument("--lookup", type=int, nargs="+", default=list(LOOKUP),
                        help="prompt_lookup_num_tokens of the stock variants")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5, help="time-to-first-token repeats")
    parser.add_argument("--no-ttft", action="store_true", help="skip the prefix-reuse timing")
    parser.add_argument("--bandwidth-gbs", type=float, default=26.0,
                        help="memory bandwidth for the decode bound (26 here; ~4300 on an H200)")
    parser.add_argument("--device", help="cpu, cuda, ... (default: the backend's pick, CUDA first)")
    parser.add_argument("--dtype", help="float32, bfloat16, ... (default: the backend's pick for "
                        "the device: bf16 on CUDA, else fp32)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args()


def _cost_curve(backend, torch) -> dict[int, float]:
    """Median seconds of one forward over k new tokens after a 350-token cached prompt."""
    from transformers import DynamicCache

    lm, timings, device = backend.lm, {k: [] for k in CURVE_WIDTHS}, backend.device
    with torch.inference_mode():
        cache = DynamicCache()
        lm(input_ids=torch.randint(100, 5000, (1, 350), device=device), past_key_values=cache,
           use_cache=True)
        for _ in range(5):
            for k in CURVE_WIDTHS:  # interleaved
                ids = torch.randint(100, 5000, (1, k), device=device)
                _synchronize(torch, device)
                started = time.perf_counter()
                lm(input_ids=ids, past_key_values=cache, use_cache=True)
                _synchronize(torch, device)
                timings[k].append(time.perf_counter() - started)
                cache.crop(-k)
    return {k: statistics.median(v) for k, v in timings.items()}


def _compare(backend, name, items, max_new_tokens, curve, lookup) -> dict:
    """One sequence at a time: every variant on every item, the order rotating item by item."""
    names = ["plain", *(f"stock_{n}" for n in lookup), "backend"]
    caches = {}
    if hasattr(backend, "prefixes"):
        names.append("backend_prefix")
        cache = type(backend.prefixes)
        caches = {"backend": cache(0), "backend_prefix": cache(backend.prefixes.size)}
    rows, ideal_s = [], 0.0
    for i, item in enumerate(items):
        prompt = build_prompt(item["query"], item["response"], item["objectives"])
        runs = {}
        shift = i % len(names)
        for v in names[shift:] + names[:shift]:
            if v in caches:
                backend.prefixes = caches[v]
            started = time.perf_counter()
            generation = _run(backend, v, prompt, item["response"], max_new_tokens)
            runs[v] = (generation, time.perf_counter() - started)
        plain = runs["plain"][0]
        copied, total = _copied_runs(backend, item["response"], plain.text)
        ideal_s += _ideal_seconds(curve, copied, plain.completion_tokens)
        rows.append({
            "id": item.get("id", i),
            "completion_tokens": plain.completion_tokens,
            "kept_fraction": round(sum(copied) / max(total, 1), 3),
            "variants": {
                v: {"s": seconds, **({"text": g.text} if v == "plain" else {}),
                    "identical": (g.text, g.completion_tokens) == (plain.text, plain.completion_tokens),
                    **({"stats": g.stats} if g.stats else {})}
                for v, (g, seconds) in runs.items()
            },
            "aligned": plain.text[:160],
        })
    tokens = sum(r["completion_tokens"] for r in rows)
    seconds = {v: sum(r["variants"][v]["s"] for r in rows) for v in names}
    plain_decode_s = curve[1] * tokens
    ideal = plain_decode_s / ideal_s
    variants = {}
    for v in names:
        speedup = seconds["plain"] / seconds[v]
        variants[v] = {
            "tokens_per_s": round(tokens / seconds[v], 2),
            "speedup": round(speedup, 3),
            "identical_to_plain": sum(r["variants"][v]["identical"] for r in rows),
        }
        if v != "plain":
            variants[v]["fraction_of_ideal"] = round(speedup / ideal, 3)
        stats = [r["variants"][v]["stats"] for r in rows if "stats" in r["variants"][v]]
        if stats:
            drafted = sum(s.get("drafted_tokens", 0) for s in stats)
            accepted = sum(s.get("accepted_tokens", 0) for s in stats)
            variants[v].update(drafted_tokens=drafted, accepted_tokens=accepted,
                               acceptance=round(accepted / max(drafted, 1), 3))
    stock = {v: r for v, r in variants.items() if v.startswith("stock_")}
    best = max(stock, key=lambda v: stock[v]["tokens_per_s"])
    if caches:
        backend.prefixes = caches["backend"]
    return {
        "backend": "transformers",
        "workload": name,
        "items": len(rows),
        "kept_fraction": round(statistics.mean(r["kept_fraction"] for r in rows), 3),
        "items_keeping_80pct_or_more": sum(r["kept_fraction"] >= 0.8 for r in rows),
        "completion_tokens": tokens,
        "ideal_speedup": round(ideal, 3),
        "variants": variants,
        "best_peer": best,
        "vs_best_peer": round(variants["backend"]["tokens_per_s"] / stock[best]["tokens_per_s"], 3),
        "per_item": rows,
        "_plain": [(r["variants"]["plain"]["text"], r["completion_tokens"]) for r in rows],
        "ideal_note": "decode only: copied runs (difflib on tokens) verified in the cheapest "
                      "chunking of the measured cost curve, other tokens one forward each; "
                      "achieved speed-ups include prompt processing in every variant",
    }


def _run(backend, variant: str, prompt: str, response: str, max_new_tokens: int) -> Generation:
    """One call of `variant`: the backend's own paths, or `generate` with stock prompt lookup."""
    if not variant.startswith("stock_"):
        settings = GenerationSettings(max_new_tokens=max_new_tokens, drafting=variant != "plain")
        return backend.generate([prompt], settings, [response])[0]
    import torch

    ids = backend.tokenizer(prompt)["input_ids"]
    settings = GenerationSettings(max_new_tokens=max_new_tokens)
    with torch.inference_mode():
        out = backend.lm.generate(
            input_ids=torch.tensor([ids], device=backend.device),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=backend.device),
            prompt_lookup_num_tokens=int(variant.split("_")[1]),
            **backend._generate_kwargs(settings, len(ids)),
        )
    return backend._finish(ids, out[0, len(ids):].tolist())


def _synchronize(torch, device: str) -> None:
    """Wait for the GPU's queued work, so a host clock read after it times the work itself."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _summary(c: dict) -> str:
    parts = [f"{v} {r['tokens_per_s']} tok/s ({r['speedup']:.2f}x, "
             f"{r['identical_to_plain']}/{c['items']} identical)" for v, r in c["variants"].items()]
    return (f"{c['workload']} ({c['items']} items, kept {c['kept_fraction']}): " + "; ".join(parts)
            + f"; backend / best stock {c['vs_best_peer']}")


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


def _batching(backend, name, items, max_new_tokens, sequential, plain) -> dict:
    """All items in batches of `batch_size` through the backend (plain `generate` batched, and
    the greedy drafted batch path when it has one) against the per-item figures."""
    prompts = [build_prompt(i["query"], i["response"], i["objectives"]) for i in items]
    responses = [i["response"] for i in items]
    out = {"backend": "transformers", "workload": name, "batch_size": backend.batch_size,
           "items": len(items)}
    paths = {"plain_batched": False}
    if hasattr(backend, "draft_batches"):
        paths["backend_batched"] = True
    for key, drafting in paths.items():
        settings = GenerationSettings(max_new_tokens=max_new_tokens, drafting=drafting)
        if drafting:
            backend.draft_batches = True
        started = time.perf_counter()
        generations = backend.generate(prompts, settings, responses)
        seconds = time.perf_counter() - started
        if hasattr(backend, "draft_batches"):
            backend.draft_batches = False
        out[f"{key}_tokens_per_s"] = round(sum(g.completion_tokens for g in generations) / seconds, 2)
        out[f"{key}_identical_to_plain"] = sum(
            (g.text, g.completion_tokens) == want for g, want in zip(generations, plain))
    for v, record in sequential["variants"].items():
        out[f"{v}_one_by_one_tokens_per_s"] = record["tokens_per_s"]
    return out


def _time_to_first_token(backend, repeats: int) -> dict | None:
    """One new token, drafted path, with a warm prefix cache against none; alternated."""
    if not hasattr(backend, "prefixes"):
        return None
    cache_type = type(backend.prefixes)
    items = WORKLOADS["copy_heavy"]
    prompts = [build_prompt(i["query"], i["response"], LONG_OBJECTIVES) for i in items]
    prefix_tokens = backend.count_tokens(build_prompt("\x00", "", LONG_OBJECTIVES).split("\x00")[0])
    one = GenerationSettings(max_new_tokens=1)
    reuse, cold = cache_type(4), cache_type(0)
    backend.prefixes = reuse
    backend.generate(prompts[-1:], one)  # fills the cache with the instruction + objectives
    timings = {"with": [], "without": []}
    for i in range(repeats):
        for key, cache in (("without", cold), ("with", reuse)):
            backend.prefixes = cache
            started = time.perf_counter()
            backend.generate([prompts[i]], one, [items[i]["response"]])
            timings[key].append(time.perf_counter() - started)
    backend.prefixes = cache_type(0)
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
