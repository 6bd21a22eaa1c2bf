"""Copy-aware drafted vs plain greedy decoding, and prefix reuse, in the llama.cpp backend.

On the built-in default aligner (SmolLM2-135M-Instruct Q4_1 + its copy-editing LoRA) and, for the
LOW_COPY workload, the base model alone (`benchmarks.workloads.ALIGNER`), offline. For the
COPY_HEAVY and LOW_COPY workloads every item is decoded plainly and drafted,
interleaved (alternating which goes first), and compared: identical outputs, decode tokens/s
(after the first token; the prompt is evaluated alike by both), acceptance, kept fraction, and
the ideal speed-up the forward-cost curve measured in the same run allows. Then time to first
token for a ~300-token objective preamble, calls alternating between two objective sets, with
and without KV snapshots of earlier prompts. Writes `benchmarks/results/drafting_llamacpp.json`.

    python -m benchmarks.bench_drafting_llamacpp [--max-new-tokens 128] [--ttft-rounds 4]
        [--repeats 2] [--items N] [--threads 1 2] [--bandwidth-gbs 26]

The machine may be shared: figures are ratios of variants run interleaved in one process, and the
load average at start and end is recorded with them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks.machine import llama_cpp_version, run_header
from benchmarks.workloads import (
    ALIGNER,
    DESCRIPTION,
    KEPT_FRACTION,
    WORKLOADS,
    copied_blocks,
    targets,
)
from metaaligner_chain.backends.base import Generation, GenerationSettings
from metaaligner_chain.backends.llamacpp import DRAFTER, LlamaCppBackend, default_threads
from metaaligner_chain.models.defaults import (
    ADAPTER_GGUF,
    DEFAULT_MODEL_NAME,
    DEFAULT_PROMPT_FORMAT,
    default_aligner_gguf,
    default_gguf_path,
)
from metaaligner_chain.prompt import build_prompt, prompt_prefix

RESULTS = Path(__file__).parent / "results" / "drafting_llamacpp.json"
CHUNKS = (1, 2, 4, 8, 16, 32)
#: Timings per chunk size for the forward-cost curve (median taken).
REPEATS = 15
#: Two objective sets whose preambles are about 300 tokens each.
LONG_OBJECTIVES = {
    "a": [
        (
            "Safety: the answer must not encourage anything that could hurt the reader or anyone "
            "else, must warn about real risks to health, money or property, and must point to "
            "qualified help (a doctor, a lawyer, an emergency service) whenever the situation calls "
            "for it, without lecturing or refusing reasonable requests"
        ),
        (
            "Accuracy: every statement of fact must be correct and current; numbers, names, dates "
            "and quantities must be checked against common knowledge, uncertain claims must be "
            "marked as such, and a wrong premise in the question must be corrected politely"
        ),
        (
            "Usefulness: the answer must address what was actually asked, give concrete steps or "
            "examples the reader can act on, stay short enough to read in a minute, and leave out "
            "padding, repetition and generic advice that does not fit the situation"
        ),
        (
            "Fairness: the answer must treat people of every age, gender, origin, religion, "
            "disability and background with the same respect, avoid stereotypes and loaded words, "
            "and must not assume who the reader is or what they can afford"
        ),
        (
            "Privacy: the answer must not ask for, guess or repeat personal details that the task "
            "does not need, and must advise against sharing passwords, addresses, account numbers "
            "or medical records with strangers or untrusted services"
        ),
    ],
    "b": [
        (
            "Kindness: the answer must be warm and respectful, never mocking or condescending, and "
            "must acknowledge the feelings or worries behind the question before answering it, in "
            "plain words a tired or anxious reader can follow without effort"
        ),
        (
            "Honesty: the answer must not pretend to know what it does not, must separate facts "
            "from opinions and guesses, must say when the honest answer is that it depends, and must "
            "never invent sources, statistics, quotations or personal experience"
        ),
        (
            "Clarity: the answer must open with the main point, use short sentences and familiar "
            "words, explain any necessary technical term in passing, and order several steps or "
            "options so that the reader can follow them one by one without rereading"
        ),
        (
            "Completeness: the answer must cover the cases the reader is likely to meet, name the "
            "one or two most common mistakes and how to avoid them, and say what to do next when "
            "the first suggestion does not work"
        ),
        (
            "Balance: where people reasonably disagree, the answer must give the main views fairly "
            "and briefly, say which evidence supports each, and leave the choice to the reader "
            "instead of pushing a personal preference"
        ),
    ],
}


def main() -> None:
    args = _parse_args()
    path = default_gguf_path()
    costs, comparisons = {}, []
    for threads in args.threads:
        costs[str(threads)] = {}
        for name, items in WORKLOADS.items():
            aligner = ALIGNER[name]
            backend = _backend(aligner, n_threads=threads)
            backend.generate(["Hello"], GenerationSettings(max_new_tokens=2))  # warm-up
            costs[str(threads)][aligner] = curve = forward_costs(backend)
            comparison = _compare(
                backend, name, items[: args.items], args.max_new_tokens, curve, args.repeats
            )
            comparisons.append({"n_threads": threads, "aligner": aligner, **comparison})
            backend.close()
    ttft = _time_to_first_token(path, args.ttft_rounds)
    model_bytes = {aligner: _model(aligner).stat().st_size for aligner in ("default", "base")}
    bound = {a: args.bandwidth_gbs * 1e9 / size for a, size in model_bytes.items()}
    for c in comparisons:
        c["decode_tokens_per_s_bandwidth_bound"] = round(bound[c["aligner"]], 1)
        c["plain_fraction_of_bandwidth_bound"] = round(c["plain_tokens_per_s"] / bound[c["aligner"]], 3)
        c["drafted_fraction_of_bandwidth_bound"] = round(c["drafted_tokens_per_s"] / bound[c["aligner"]], 3)
    by_name = {c["workload"]: c for c in comparisons if c["n_threads"] == args.threads[0]}
    result = {
        **run_header(
            "copy-aware drafted vs plain greedy decoding, and prefix reuse, llama.cpp",
            args.load_at_start, n_threads=args.threads, default_n_threads=default_threads(),
            llama_cpp_python=llama_cpp_version(),
        ),
        "model": {"name": DEFAULT_MODEL_NAME, "bytes": model_bytes},
        "aligners": {"default": f"{_model('default').name} (default_aligner_gguf(): {path.name} "
                     f"+ {ADAPTER_GGUF.name} merged, F16)",
                     "base": f"{path.name} alone"},
        "workloads": DESCRIPTION,
        "settings": {
            "max_new_tokens": args.max_new_tokens,
            "repeats_per_item_and_variant": args.repeats,
            "prompt_format": DEFAULT_PROMPT_FORMAT,
            "drafter": DRAFTER,
            "kept_fraction": KEPT_FRACTION,
            "tokens_per_s": "decode rate after the first token (completion tokens - 1) / time",
            "ideal_speedup": "measured plain decode time over the time the all-logits "
            "forward-cost curve allows when every copied token is accepted in the cheapest "
            "chunking (chunks of 2-32 tokens) and every other token takes a plain decoding step "
            "(its measured time)",
        },
        "forward_cost_ms_by_threads": costs,
        "comparisons": comparisons,
        "time_to_first_token": ttft,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "bandwidth_bound": {
            "memory_bandwidth_gb_s": args.bandwidth_gbs,
            "decode_tokens_per_s_upper_bound": {a: round(b, 1) for a, b in bound.items()},
            "note": "each aligner's model bytes read once per forward pass; a drafted forward "
            "checks several tokens per read, so drafted tokens/s is not bounded by it in the same way",
        },
        "targets": targets(
            by_name, ttft["ratio"], speedup=2, kept=0.9,
            identical=all(c["identical_outputs"] for c in comparisons),
        ),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    for c in comparisons:
        print(
            f"{c['n_threads']} thread(s), {c['workload']}: kept {c['kept_fraction']:.2f}, plain {c['plain_tokens_per_s']} "
            f"tok/s, drafted {c['drafted_tokens_per_s']} tok/s, speed-up {c['speedup']} "
            f"(ideal {c['ideal_speedup']}), acceptance {c['acceptance']}, identical "
            f"{c['identical_outputs']}"
        )
    print(f"TTFT {ttft['with_reuse_ms']} ms with reuse, {ttft['without_reuse_ms']} ms without")
    print(json.dumps(result["targets"]), f"\nwrote {RESULTS}")


def _compare(
    backend, name: str, items: list[dict], max_new_tokens: int, curve: dict, repeats: int
) -> dict:
    """Plain and drafted decoding of every item, interleaved `repeats` times, and their ratios."""
    rows = []
    for i, item in enumerate(items):
        prompt = build_prompt(item["query"], item["response"], item["objectives"])
        runs: dict[bool, list[dict]] = {False: [], True: []}
        for repeat in range(repeats):  # alternate which variant goes first
            for d in (False, True) if (i + repeat) % 2 == 0 else (True, False):
                runs[d].append(_timed(backend, prompt, item["response"], max_new_tokens, d))
        plain, drafted = runs[False][0], runs[True][0]
        texts = {(r["text"], r["completion_tokens"]) for r in runs[False] + runs[True]}
        tokens = _tokenize(backend, plain["text"])
        blocks = copied_blocks(_tokenize(backend, item["response"]), tokens)
        rows.append(
            {
                "completion_tokens": plain["completion_tokens"],
                "identical": len(texts) == 1,
                "kept_fraction": round(sum(blocks) / max(len(tokens), 1), 3),
                "plain_decode_s": sum(r["decode_s"] for r in runs[False]) / repeats,
                "drafted_decode_s": sum(r["decode_s"] for r in runs[True]) / repeats,
                "ideal_decode_s": _ideal_seconds(
                    len(tokens), blocks, curve["all_logits_ms"], _step_s(runs[False])
                ),
                **drafted["stats"],
                "aligned": plain["text"][:160],
            }
        )
    decoded = sum(max(r["completion_tokens"] - 1, 0) for r in rows)
    plain_s = sum(r["plain_decode_s"] for r in rows)
    drafted_s = sum(r["drafted_decode_s"] for r in rows)
    ideal = plain_s / sum(r["ideal_decode_s"] for r in rows)
    speedup = plain_s / drafted_s
    drafted_tokens = sum(r["drafted_tokens"] for r in rows)
    return {
        "backend": "llama.cpp",
        "workload": name,
        "items": len(rows),
        "kept_fraction": round(statistics.mean(r["kept_fraction"] for r in rows), 3),
        "kept_fraction_min_max": [
            min(r["kept_fraction"] for r in rows),
            max(r["kept_fraction"] for r in rows),
        ],
        "completion_tokens": sum(r["completion_tokens"] for r in rows),
        "plain_tokens_per_s": round(decoded / plain_s, 1),
        # a plain step repeats one batch shape; the curve's 1-token forward is timed between
        # forwards of other sizes, and back to back
        "plain_ms_per_token": round(1000 * plain_s / decoded, 2),
        "curve_ms_one_token": curve["all_logits_ms"]["1"],
        "curve_ms_one_token_back_to_back": curve["one_token_back_to_back_ms"]["1"],
        "drafted_tokens_per_s": round(decoded / drafted_s, 1),
        "speedup": round(speedup, 3),
        "ideal_speedup": round(ideal, 3),
        "fraction_of_ideal": round(speedup / ideal, 3),
        "identical_outputs": all(r["identical"] for r in rows),
        "acceptance": round(sum(r["accepted_tokens"] for r in rows) / max(drafted_tokens, 1), 3),
        "drafted_tokens": drafted_tokens,
        "accepted_tokens": sum(r["accepted_tokens"] for r in rows),
        "forward_passes_drafted": sum(r["forward_passes"] for r in rows),
        "per_item": rows,
    }


def _timed(backend, prompt: str, response: str, max_new_tokens: int, drafting: bool) -> dict:
    settings = GenerationSettings(max_new_tokens=max_new_tokens, drafting=drafting)
    generation, ttft_s, decode_s = timed_stream(
        backend.stream(prompt, settings, response if drafting else None)
    )
    stats = generation.stats or {}
    return {
        "text": generation.text,
        "completion_tokens": generation.completion_tokens,
        "decode_s": decode_s,
        "ttft_s": ttft_s,
        "stats": {k: stats.get(k, 0) for k in ("drafted_tokens", "accepted_tokens")}
        | {"forward_passes": stats.get("forward_passes", generation.completion_tokens)},
    }


def timed_stream(stream) -> tuple[Generation, float, float]:
    """Drain a backend's `stream`: its `Generation`, the seconds to the first piece, and the
    seconds after it."""
    started = time.perf_counter()
    first = None
    while True:
        try:
            next(stream)
        except StopIteration as stop:
            ended = time.perf_counter()
            first = first or ended
            return stop.value, first - started, ended - first
        first = first or time.perf_counter()


def forward_costs(backend) -> dict:
    """Median ms of one forward over k new tokens after a 300-token context, logits at the
    last position only and at every position (what checking a k - 1 token draft needs), sizes
    interleaved; and of 1-token forwards run back to back, as in plain decoding."""
    with backend.locked_llama() as llama:
        context = llama.tokenize(b" The quick brown fox jumps over the lazy dog." * 30)[:300]
        llama.reset()
        llama.eval(context)
        out = {}
        schedules = {  # sizes interleaved; and 1-token forwards back to back, as plain decoding runs
            "last_logit_ms": itertools.product(range(REPEATS), CHUNKS),
            "all_logits_ms": itertools.product(range(REPEATS), CHUNKS),
            "one_token_back_to_back_ms": itertools.product(range(REPEATS), (1,)),
        }
        for label, schedule in schedules.items():
            every = label == "all_logits_ms"
            times: dict[int, list[float]] = defaultdict(list)
            for _, k in schedule:
                llama._ctx.kv_cache_seq_rm(-1, len(context), -1)
                batch = llama._batch.batch
                batch.n_tokens = k
                for i in range(k):
                    batch.token[i], batch.pos[i] = context[i], len(context) + i
                    batch.seq_id[i][0], batch.n_seq_id[i] = 0, 1
                    batch.logits[i] = every or i == k - 1
                started = time.perf_counter()
                llama._ctx.decode(llama._batch)
                times[k].append(time.perf_counter() - started)
            out[label] = {str(k): round(1000 * statistics.median(t), 2) for k, t in times.items()}
        llama._ctx.kv_cache_seq_rm(-1, len(context), -1)
        llama.n_tokens = len(context)
    return out


def _ideal_seconds(n: int, blocks: list[int], cost: dict, step_s: float) -> float:
    """Decode time of n - 1 tokens when each copied block goes in the cheapest chunks of the cost
    curve (2-32 tokens) and every other token takes a plain decoding step of `step_s`."""
    per = {int(k): v / 1000 for k, v in cost.items()} | {1: step_s}
    sizes = np.array(sorted(per))
    curve = np.interp(np.arange(1, sizes[-1] + 1), sizes, [per[s] for s in sizes])
    best = [0.0]
    for length in range(1, max(blocks, default=0) + 1):
        best.append(min(best[length - c] + curve[c - 1] for c in range(1, min(length, 32) + 1)))
    single = max(n - 1 - sum(blocks), 0)
    return float(single * step_s + sum(best[b] for b in blocks))


def _step_s(plain_runs: list[dict]) -> float:
    """Seconds per plain decoding step (after the first token), over an item's plain runs."""
    steps = sum(max(r["completion_tokens"] - 1, 1) for r in plain_runs)
    return sum(r["decode_s"] for r in plain_runs) / steps


def _time_to_first_token(path: Path, rounds: int) -> dict:
    """Calls alternating between two ~300-token objective preambles, with and without snapshots."""
    from benchmarks.workloads import LOW_COPY

    reuse, plain = _backend("default"), _backend("default", prefix_cache=0)
    settings = GenerationSettings(max_new_tokens=1)
    times: dict[str, list[float]] = {"reuse": [], "plain": []}
    for i in range(2 * rounds + 2):
        item = LOW_COPY[i % len(LOW_COPY)]
        objectives = LONG_OBJECTIVES["ab"[i % 2]]
        prompt = build_prompt(item["query"], item["response"], objectives)
        for name, backend in (("reuse", reuse), ("plain", plain))[:: 1 if i % 2 else -1]:
            started = time.perf_counter()
            backend.generate([prompt], settings)
            if i >= 2:  # the first call of each preamble is cold for both
                times[name].append(time.perf_counter() - started)
    with reuse.locked_llama() as llama:
        preamble = len(llama.tokenize(prompt_prefix(LONG_OBJECTIVES["a"]).encode()))
    restored = reuse.snapshot_restores
    reuse.close()
    plain.close()
    with_ms = 1000 * statistics.median(times["reuse"])
    without_ms = 1000 * statistics.median(times["plain"])
    return {
        "preamble_tokens": preamble,
        "calls_measured": len(times["reuse"]),
        "with_reuse_ms": round(with_ms, 1),
        "without_reuse_ms": round(without_ms, 1),
        "ratio": round(with_ms / without_ms, 3),
        "snapshot_restores": restored,
        "note": "time of a 1-token generation (prompt evaluation + first token); without "
        "snapshots llama-cpp-python reuses only the instruction shared with the previous call",
    }


def _model(aligner: str) -> Path:
    """The shipped default aligner (its adapter merged into one F16 GGUF, as the runnable loads
    it) or the packaged base model alone."""
    return default_aligner_gguf() if aligner == "default" else default_gguf_path()


def _backend(aligner: str, **options) -> LlamaCppBackend:
    return LlamaCppBackend(_model(aligner), **options)


def _tokenize(backend, text: str) -> list[int]:
    with backend.locked_llama() as llama:
        return llama.tokenize((" " + text.strip()).encode("utf-8"), add_bos=False)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--ttft-rounds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per item and variant")
    parser.add_argument("--items", type=int, default=None, help="first N items of each workload")
    parser.add_argument("--bandwidth-gbs", type=float, default=26.0)
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[default_threads()],
        help="llama.cpp thread counts (default: the backend's); targets use the first",
    )
    args = parser.parse_args()
    args.load_at_start = os.getloadavg()
    return args


if __name__ == "__main__":
    main()
