"""transformers on CPU: the default aligner in fp32, bf16 and fp32 compiled, each against its memory bound.

Plain greedy decoding (`generate`, no drafting) spends its time in the matrix products, whose
speed depends on the weights' dtype: fp32 reads 538 MB per token, bf16 half that, and CPUs with
native bf16 (AVX512-BF16 or AMX) compute in it directly; and in the few thousand small operations
around them, which `compile=True` (`backends/transformers/compiled.py`) fuses. Per held-out item
(the default aligner's real rewrites, examples/eval/heldout/; the variants interleaved, which goes
first rotating): decode tokens/s after the first token, its share of the bandwidth bound (weight
bytes read once per token), and the backend as the runnable runs it (copy-aware drafting, which
stays eager under `compile=True`) in whole calls, so the drafting gain is seen in each variant.
Parity with fp32: outputs identical, and token agreement (teacher-forced: the share of fp32's
output tokens bf16 picks itself given the same prefix). The compiled variant's first call (its
compilation) is timed apart. Writes `benchmarks/results/transformers_dtype.json`.

    python -m benchmarks.bench_transformers_dtype [--items 24] [--max-new-tokens 256]
        [--threads 2] [--bandwidth-gbs GB/S]

The bound is this run's own read bandwidth at `--threads` (a 512 MB fp32 tensor summed, as
`bench_transformers_profile` measures it) unless `--bandwidth-gbs` gives one: the project's
machines differ (26 GB/s was measured on one and used for every run until December 2026).

Also tried by hand, not kept: `torch.compile` with frozen weights, and `generate`'s own compile
path (static cache, `CompileConfig`): no faster than eager; a static cache compiled once, 1.05x;
compiling only the 30 MLPs and 61 norms, which would leave the cache's layouts alone and so could
serve the drafted loop too: 0.85x plain and 0.92x drafted (each compiled module's guards cost more
than its fusion saves).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from benchmarks.bench_default_quant import MIN_AGREEMENT, held_out_prompts
from benchmarks.bench_transformers_profile import read_bandwidth_gbs
from benchmarks.machine import run_header
from metaaligner_chain.backends.base import GenerationSettings

RESULTS = Path(__file__).parent / "results" / "transformers_dtype.json"
#: Variant name -> backend options.
VARIANTS = {"fp32": {"dtype": "fp32"}, "bf16": {"dtype": "bf16"},
            "fp32_compiled": {"dtype": "fp32", "compile": True}}


def weight_mb(lm) -> float:
    return sum(p.numel() * p.element_size() for p in lm.parameters()) / 1e6


def plain_decode(backend, prompt: str, max_new_tokens: int) -> tuple[list[int], float | None, float]:
    """Greedy `generate` of `prompt`: the new token ids, decode tokens/s after the first token,
    and tokens/s over the whole call (prompt included)."""
    import torch
    from transformers.generation.streamers import BaseStreamer

    class Clock(BaseStreamer):
        def __init__(self) -> None:
            self.times: list[float] = []

        def put(self, value) -> None:
            self.times.append(time.perf_counter())

        def end(self) -> None:
            pass

    ids = backend.tokenizer(prompt)["input_ids"]
    clock = Clock()
    settings = GenerationSettings(max_new_tokens=max_new_tokens, drafting=False)
    start = time.perf_counter()
    with torch.inference_mode():
        out = backend._generator.generate(
            input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            streamer=clock, **backend._generate_kwargs(settings, len(ids)),
        )
    new = out[0, len(ids):].tolist()
    stop = next((i for i, t in enumerate(new) if t in backend.eos_ids), len(new))
    # the streamer's first put is the prompt, the second the first new token
    decoded = len(clock.times) - 2
    rate = decoded / (clock.times[-1] - clock.times[1]) if decoded > 0 else None
    return new[:stop], rate, len(new) / (time.perf_counter() - start)


def agreement(backend, prompt: str, reference: list[int]) -> tuple[int, int]:
    """How many of `reference`'s tokens `backend`'s model predicts itself given the same prefix."""
    import torch

    if not reference:
        return 0, 0
    ids = backend.tokenizer(prompt)["input_ids"]
    with torch.inference_mode():
        logits = backend.lm(torch.tensor([ids + reference])).logits[0]
    picked = logits[len(ids) - 1 : len(ids) + len(reference) - 1].argmax(-1).tolist()
    return sum(a == b for a, b in zip(picked, reference)), len(reference)


def main() -> None:
    import torch

    from metaaligner_chain.backends.transformers import TransformersBackend
    from metaaligner_chain.models.defaults import default_aligner_hf_dir

    args = _parse_args()
    torch.set_num_threads(args.threads)
    header = run_header("bench_transformers_dtype", os.getloadavg(), threads=args.threads,
                        native_bf16=_native_bf16(torch))
    model = str(default_aligner_hf_dir())
    # this machine's read bandwidth: a 512 MB tensor summed, the best of a few
    bandwidth = args.bandwidth_gbs or read_bandwidth_gbs(torch, torch.ones(128 * 1024 * 1024), args.threads)
    backends = {name: TransformersBackend(model, device="cpu", prefix_cache_size=0, **options)
                for name, options in VARIANTS.items()}
    first_call_s: dict[str, float] = {}
    every = held_out_prompts(None)
    prompts = every[:: max(1, len(every) // args.items)][: args.items]
    drafted = GenerationSettings(max_new_tokens=args.max_new_tokens)
    rows, names = [], list(VARIANTS)
    for n, (prompt, answer) in enumerate(prompts):
        order = names[n % len(names):] + names[:n % len(names)]
        row: dict = {}
        for name in order:  # warm each model on the first item before timing
            backend = backends[name]
            if n == 0:  # the compiled variant compiles its prompt and step graphs here
                start = time.perf_counter()
                plain_decode(backend, prompt, 8)
                first_call_s[name] = round(time.perf_counter() - start, 1)
            tokens, rate, whole = plain_decode(backend, prompt, args.max_new_tokens)
            start = time.perf_counter()
            out = backend.generate([prompt], drafted, [answer])[0]
            row[name] = {"tokens": tokens, "decode_tok_s": rate, "plain_tok_s": whole,
                         "drafted_tok_s": out.completion_tokens / (time.perf_counter() - start),
                         "drafted_same_as_plain": out.text == backend.tokenizer.decode(tokens)}
        row["agree"] = agreement(backends["bf16"], prompt, row["fp32"]["tokens"])
        rows.append(row)
        print(f"{n + 1}/{len(prompts)}: " + ", ".join(
            f"{d} {row[d]['decode_tok_s'] or 0:.1f} tok/s" for d in VARIANTS), flush=True)
    result = {**header, "items": len(rows), "max_new_tokens": args.max_new_tokens,
              "bandwidth_gbs": round(bandwidth, 1), "bandwidth_measured": not args.bandwidth_gbs,
              "model": model,
              "workload": "held-out set (examples/eval/heldout), every k-th item", "variants": {}}
    for name in VARIANTS:
        rates = [r[name]["decode_tok_s"] for r in rows if r[name]["decode_tok_s"]]
        drafted_rates = [r[name]["drafted_tok_s"] for r in rows]
        whole = statistics.median(r[name]["plain_tok_s"] for r in rows)
        mb = weight_mb(backends[name].lm)
        median = statistics.median(rates)
        result["variants"][name] = {
            "weights_mb": round(mb, 1),
            "decode_tok_s": round(median, 1),
            "bound_tok_s": round(bandwidth * 1e3 / mb, 1),
            "share_of_bound": round(median * mb / 1e3 / bandwidth, 3),
            "plain_tok_s_whole_calls": round(whole, 1),
            "drafted_tok_s_whole_calls": round(statistics.median(drafted_rates), 1),
            "drafting_gain": round(statistics.median(drafted_rates) / whole, 2),
            "drafted_same_as_plain": sum(r[name]["drafted_same_as_plain"] for r in rows),
            "identical_to_fp32": sum(r[name]["tokens"] == r["fp32"]["tokens"] for r in rows),
            "first_call_s": first_call_s[name],
        }
    agreed, total = (sum(r["agree"][i] for r in rows) for i in (0, 1))
    bf16 = result["variants"]["bf16"]
    bf16["token_agreement"] = round(agreed / total, 4) if total else None
    for name in (n for n in VARIANTS if n != "fp32"):  # each against eager fp32
        variant = result["variants"][name]
        variant["speedup_vs_fp32"] = round(variant["decode_tok_s"] / result["variants"]["fp32"]["decode_tok_s"], 2)
    result["targets"] = {
        "plain_ge_60pct_of_bound": {d: v["share_of_bound"] >= 0.6 for d, v in result["variants"].items()},
        "bf16_parity": (bf16["identical_to_fp32"] == len(rows)) or (bf16["token_agreement"] or 0) >= MIN_AGREEMENT,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["variants"], indent=2), json.dumps(result["targets"]))


def _native_bf16(torch) -> bool:
    cpu = torch.cpu
    return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=24)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bandwidth-gbs", type=float, default=None,
                        help="memory bandwidth for the bound (default: measured in this run)")
    return parser.parse_args()


if __name__ == "__main__":
    main()
