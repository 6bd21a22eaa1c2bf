"""Write benchmarks/RESULTS.md from benchmarks/results/*.json: `python -m benchmarks.report`.

Every figure in RESULTS.md is copied from a results file written by a benchmark script in this
folder; this script only lays them out (command, machine and date come with each file).
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "results"


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _header(title: str, data: dict) -> list[str]:
    machine = data.get("machine", {})
    load = machine.get("load_average_at_start")
    return [
        f"## {title}",
        "",
        f"- command: `{data.get('command', '?')}`",
        f"- date: {data.get('date', '?')}",
        f"- machine: {machine.get('platform', '?')}, {machine.get('cpu_count', '?')} CPUs"
        + (f", load average at start {load}" if load else ""),
        "",
    ]


def _first(data: dict, *names: str):
    """The value under the first of `names` present (the scripts name some fields differently)."""
    return next((data[n] for n in names if n in data), "?")


def _table(rows: list[list], head: list[str]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def default_aligner(data: dict) -> list[str]:
    rows = [
        [threads, r["decode_tokens_per_s_median"], r["decode_tokens_per_s_range"],
         r["prompt_tokens_per_s_median"], r["runtime_adapter_decode_tokens_per_s_median"],
         r["runtime_adapter_prompt_tokens_per_s_median"], r["base_model_decode_tokens_per_s_median"],
         f"{r['merged_vs_runtime_adapter']['check_16_draft_tokens']:.2f}×"]
        for threads, r in data["by_threads"].items()
    ]
    costs = [
        f"{threads} threads, ms per forward over k tokens (all logits): "
        + "; ".join(f"{name} {c}" for name, c in r["forward_cost_ms"].items())
        for threads, r in data["by_threads"].items()
    ]
    bound = data["bandwidth_bound"]
    return [
        *_header("Built-in default aligner (SmolLM2-135M-Instruct + LoRA, llama.cpp)", data),
        f"Default: {data['model']['file']}. Run-time adapter: {data['model']['runtime_adapter']}.",
        "",
        *_table(rows, ["threads", "decode tok/s (median)", "decode tok/s (range)", "prompt tok/s",
                       "run-time adapter decode tok/s", "run-time adapter prompt tok/s",
                       "base Q4_1 decode tok/s", "16-token draft check, run-time adapter / merged"]),
        *costs,
        "",
        f"Peak resident memory {data['peak_rss_mb']} MB ({data['rss_before_load_mb']} MB before "
        f"loading). Memory-bandwidth bound: {data['model']['bytes'] / 1e6:.0f} MB of weights per "
        f"token at {bound['memory_bandwidth_gb_s']} GB/s → {bound['decode_tokens_per_s_upper_bound']} "
        f"tok/s; best measured {bound['best_measured_fraction_of_bound']:.0%} of it.",
        "",
    ]


def drafting(data: dict, title: str) -> list[str]:
    head = ["backend", "aligner", "threads", "workload", "kept fraction", "plain tok/s",
            "drafted tok/s", "speed-up", "ideal", "share of ideal", "acceptance", "identical outputs"]
    threads = data.get("machine", {}).get("torch_threads")
    rows = []
    for c in data["comparisons"]:
        ideal_share = c["fraction_of_ideal"]
        rows.append([
            c["backend"], c.get("aligner", "—"), c.get("n_threads", threads), c["workload"],
            c["kept_fraction"], c["plain_tokens_per_s"], c["drafted_tokens_per_s"],
            f"{c['speedup']:.2f}×",
            f"{c['ideal_speedup']:.2f}×" if c.get("ideal_speedup") else "—",
            f"{ideal_share:.0%}" if ideal_share and (c.get("ideal_speedup") or 0) > 1.05 else "—",
            c["acceptance"], c["identical_outputs"],
        ])
    ttft = data["time_to_first_token"]
    lines = [*_header(title, data), *_table(rows, head)]
    aligners = data.get("aligners", {})
    if aligners:
        lines.append("Aligners: " + "; ".join(f"`{k}` = {v}" for k, v in aligners.items()) + ".")
        lines.append("")
    lines.append(
        f"Time to first token with a ~{_first(ttft, 'preamble_tokens', 'prefix_tokens')}-token "
        f"objectives prefix: {_first(ttft, 'with_reuse_ms', 'ttft_with_reuse_ms')} ms with prefix "
        f"reuse vs {_first(ttft, 'without_reuse_ms', 'ttft_without_reuse_ms')} ms without (ratio "
        f"{ttft['ratio']:.2f}). Peak resident memory {data['peak_rss_mb']} MB."
    )
    bound = data.get("bandwidth_bound")
    if bound:
        lines.append(
            f"Memory-bandwidth bound for plain decoding (model bytes once per token at "
            f"{bound['memory_bandwidth_gb_s']} GB/s): "
            + "; ".join(
                f"{c['workload']} ({c.get('aligner', '')}) {upper} tok/s, plain rate "
                f"{c['plain_tokens_per_s']} tok/s ({c['plain_tokens_per_s'] / upper:.0%} of it)"
                for c in data["comparisons"]
                for upper in [c.get("decode_tokens_per_s_bandwidth_bound")
                              or bound["decode_tokens_per_s_upper_bound"]]
            )
            + "."
        )
    for c in data["comparisons"]:
        subset = copying_items(c)
        if subset:
            lines.append(
                f"{c['workload']} ({c.get('aligner', '')}, {c.get('n_threads', threads)} threads): the "
                f"{subset['items']} of {c['items']} rewrites keeping ≥ {KEPT_AT_LEAST:.0%} of their "
                f"tokens (mean kept {subset['kept_fraction']:.3f}) decoded {subset['speedup']:.2f}× "
                f"faster drafted{_ideal_note(subset)}; the others ({subset['others']}) kept a mean "
                f"{subset['others_kept_fraction']:.3f}."
            )
        if "plain_ms_per_token" in c:
            lines.append(
                f"{c['workload']}: a plain decoding step took {c['plain_ms_per_token']} ms; a 1-token "
                f"forward took {c['curve_ms_one_token_back_to_back']} ms back to back and "
                f"{c['curve_ms_one_token']} ms between forwards of other sizes in the cost curve. "
                "The ideal uses the measured plain step for every token it does not verify in a chunk."
            )
    targets = data.get("targets")
    if targets:
        lines.append("Targets: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in targets.items()) + ".")
    lines.append("")
    for b in data.get("batching", []):
        lines.append(
            f"Batching ({b['workload']}, batch {b['batch_size']}): plain batched "
            f"{b['plain_batched_tokens_per_s']} tok/s vs sequential {b['plain_sequential_tokens_per_s']} "
            f"({b['plain_batch_vs_sequential']:.2f}×); drafted batched {b['drafted_batched_tokens_per_s']} "
            f"vs drafted sequential {b['drafted_sequential_tokens_per_s']}; identical: {b['identical_outputs']}."
        )
    return lines + [""]


def train_allocator(data: dict) -> list[str]:
    rows = [[name, round(m["wall_s"], 1), round(m["user_s"], 1), round(m["sys_s"], 1),
             f"{data['speedup_vs_system'][name]:.2f}×"]
            for name, m in data["median"].items()]
    missing = data.get("missing")
    return [
        *_header("CPU training: glibc malloc vs tcmalloc vs jemalloc (`ma-train train`)", data),
        f"Workload: {data['workload']}; {data['repeats']} run(s) per allocator, interleaved. "
        "`ma-train` preloads the first one installed (`trainer/train/allocator.py`).",
        "",
        *_table(rows, ["allocator", "wall s", "user CPU s", "kernel CPU s", "speed-up vs glibc"]),
        *([f"Not installed, not measured: {', '.join(missing)}.", ""] if missing else []),
    ]


def prefix_cache(data: dict) -> list[str]:
    variants = list(data["variants"])
    rows = [
        [pattern, p["preamble_tokens"], p["prompt_tokens_median"],
         *(f"{p['ttft_ms'][v]} ({p['ttft_vs_cold'][v]:.2f}×)" for v in variants),
         p["ram_cache_save_ms"], p["identical_outputs"]]
        for pattern, p in data["patterns"].items()
    ]
    held = "; ".join(
        f"{pattern} {p['ram_cache_entries']} states, {p['ram_cache_mb']} MB"
        for pattern, p in data["patterns"].items()
    )
    return [
        *_header("Prefix reuse in the llama.cpp backend: KV snapshots vs LlamaRAMCache vs none", data),
        f"Model: {data['model']}, {data['machine'].get('n_threads', '?')} llama.cpp thread(s), "
        f"{data['settings']['max_new_tokens']} new tokens a call, {data['settings']['calls_per_pattern']} "
        "calls a pattern (the first of each objective set untimed). Variants: "
        + "; ".join(f"`{v}` = {text}" for v, text in data["variants"].items()) + ".",
        "",
        *_table(rows, ["pattern", "preamble tokens", "prompt tokens", *(f"{v} TTFT ms" for v in variants),
                       "LlamaRAMCache save ms", "identical outputs"]),
        f"Held by LlamaRAMCache after the calls: {held}; the snapshots keep at most `prefix_cache` "
        "(4) preambles.",
        "",
    ]


#: Rewrites keeping at least this share of their tokens from the response count as copying.
KEPT_AT_LEAST = 0.9


def copying_items(c: dict) -> dict | None:
    """Speed-up over the items of a comparison whose rewrites copy (from its per-item records)."""
    rows = c.get("per_item") or []
    keep = [r for r in rows if r["kept_fraction"] >= KEPT_AT_LEAST]
    others = [r for r in rows if r["kept_fraction"] < KEPT_AT_LEAST]
    if not keep or not others:
        return None
    return {
        "items": len(keep),
        "kept_fraction": sum(r["kept_fraction"] for r in keep) / len(keep),
        "speedup": sum(_first(r, "plain_decode_s", "plain_s") for r in keep)
        / sum(_first(r, "drafted_decode_s", "drafted_s") for r in keep),
        "others": len(others),
        "others_kept_fraction": sum(r["kept_fraction"] for r in others) / len(others),
        "ideal_speedup": (
            sum(r["plain_decode_s"] for r in keep) / sum(r["ideal_decode_s"] for r in keep)
            if all("ideal_decode_s" in r for r in keep) else None
        ),
    }


def endpoint(data: dict) -> list[str]:
    rate, settings = data["answers_per_s"], data["settings"]
    return _header("Served aligner (llama.cpp's server) vs in process", data) + _table(
        [[v, r, data["seconds"][v]] for v, r in rate.items()],
        ["variant", "aligned answers/s (median round)", "seconds per round"],
    ) + [
        f"Model: {data['model']}. {settings['items']} {settings['workload']} items a round, "
        f"{settings['rounds']} rounds, {settings['max_new_tokens']} new tokens at most, "
        f"max_concurrency {settings['max_concurrency']}, {data['machine'].get('n_threads')} "
        "llama.cpp thread(s) on each side. Served / in process: "
        f"{data['served_vs_in_process']:.2f}× (drafting on in process), "
        f"{data['served_vs_in_process_plain']:.2f}× (drafting off: the same decoding); identical "
        f"answers: {data['identical_answers']}.",
        "",
    ]


def default_quant(data: dict) -> list[str]:
    rows = [
        [name, v["size_mb"], v["decode_tok_s"], f"{v['decode_vs_f16']:.2f}×", v["share_of_bound"],
         f"{v['identical_outputs']}/{v['items']}", f"{v['token_agreement']:.2%}",
         "yes" if v["parity"] else "no", v["peak_rss_mb"]]
        for name, v in data["variants"].items()
    ]
    targets = "; ".join(f"{k}: {v}" for k, v in data["targets"].items())
    return _header("A lighter default aligner: F16 vs llama.cpp quantizations", data) + _table(
        rows, ["file type", "MB", "decode tok/s", "vs F16", "share of bound", "identical outputs",
               "token agreement (teacher-forced)", "parity", "peak RSS MB"],
    ) + [f"Workload: {data['workload']}. Chosen: {data['chosen']}. Targets: {targets}."
         + (f" Peak RSS: {data['peak_rss_note']}" if data.get("peak_rss_note") else ""), ""]


def _ideal_note(subset: dict) -> str:
    ideal = subset.get("ideal_speedup")
    if not ideal:
        return ""
    return f" (ideal {ideal:.2f}×, {subset['speedup'] / ideal:.0%} of it)"


def main() -> None:
    lines = [
        "# Benchmark results",
        "",
        "Written by `python -m benchmarks.report` from `benchmarks/results/*.json`; rerun everything",
        "with `make bench` (`python -m benchmarks`). Ratios compare variants measured interleaved in",
        "one run: the machine is shared and its absolute speed varies.",
        "",
    ]
    if data := _load("default_aligner"):
        lines += default_aligner(data)
    if data := _load("drafting_llamacpp"):
        lines += drafting(data, "Copy-aware drafting and prefix reuse: llama.cpp")
    if data := _load("prefix_cache"):
        lines += prefix_cache(data)
    if data := _load("default_quant"):
        lines += default_quant(data)
    if data := _load("endpoint"):
        lines += endpoint(data)
    if data := _load("drafting_transformers"):
        lines += drafting(data, "Copy-aware drafting, prefix reuse and batching: transformers")
    if data := _load("train_allocator"):
        lines += train_allocator(data)
    (HERE / "RESULTS.md").write_text("\n".join(lines))
    print(f"wrote {HERE / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
