"""Drafted vs plain greedy decoding on llama.cpp: the backend beside llama-cpp-python's own
prompt lookup (`LlamaPromptLookupDecoding`), same prompts, one run; and prefix reuse.

Variants, each its own `Llama` loaded with the backend's settings (flash attention, 32-token
batches, the same threads), every item decoded by all of them in turn (the order rotating item by
item, so a busy spell of the shared machine hits all alike):
- `plain`: `Llama.generate`, greedy, no draft model;
- `stock_<n>`: the same with `draft_model=LlamaPromptLookupDecoding(num_pred_tokens=n)` (its
  default is 10; `--lookup` picks the values);
- `backend`: `LlamaCppBackend` with `drafting=True`, what the runnable runs.
Workloads: the copy-heavy and low-copy sets and the default aligner's held-out set
(`benchmarks.workloads`). Per variant: outputs identical to `plain`, decode tokens/s after the
first token, time to first token, whole-call tokens/s, the ideal speed-up the forward-cost curve
measured in the same run allows; `vs_best_peer` = backend ÷ the best stock variant. Then time to
first token for a ~300-token objective preamble, calls alternating between two objective sets,
with and without KV snapshots; with `--memory`, peak resident memory of each variant in a fresh
process. Writes (merges by workload into) `benchmarks/results/drafting_llamacpp.json`.

    python -m benchmarks.bench_drafting_llamacpp [--workloads copy_heavy low_copy heldout]
        [--lookup 10 N] [--items N] [--every K] [--repeats 1] [--max-new-tokens N] [--threads 2]
        [--memory] [--no-ttft] [--out FILE]

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
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks.machine import llama_cpp_version, run_header
from benchmarks.workloads import (
    ALIGNER,
    DESCRIPTION,
    KEPT_FRACTION,
    copied_blocks,
    targets,
    workload,
)
from metaaligner_chain.backends.base import Generation, GenerationSettings, stream_in_worker
from metaaligner_chain.backends.llamacpp import EXACT_BATCH, LlamaCppBackend, default_threads
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
#: New tokens allowed per workload: the held-out answers run to 184 tokens, so rewrites end at EOS.
MAX_NEW_TOKENS = {"copy_heavy": 128, "low_copy": 128, "heldout": 256}
#: `num_pred_tokens` of the stock peers: llama-cpp-python's default (10) and the best values of a
#: sweep over 4-24 (`drafting_llamacpp_sweep.json`): 4 on copy-heavy items, 8 on held-out ones.
LOOKUP = (10, 8, 4)

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
    if args.measure_rss:
        return _report_rss(args)
    load_at_start = os.getloadavg()
    costs, comparisons = {}, []
    for name in args.workloads:
        aligner = ALIGNER[name]
        items = workload(name, args.every)[: args.items]
        shard, shards = args.shard
        items = items[shard::shards]
        variants = _variants(aligner, args.threads, args.lookup)
        costs[aligner] = curve = forward_costs(variants["backend"])
        max_new_tokens = args.max_new_tokens or MAX_NEW_TOKENS[name]
        comparison = _compare(variants, name, items, max_new_tokens, curve, args.repeats)
        comparisons.append({"aligner": aligner, "max_new_tokens": max_new_tokens, **comparison})
        if shards > 1:
            comparisons[-1]["shards"] = [[shard, shards]]
        for variant in variants.values():
            variant.close()
        print(_summary(comparisons[-1]), flush=True)
    model_bytes = {aligner: _model(aligner).stat().st_size for aligner in ("default", "base")}
    bound = {a: args.bandwidth_gbs * 1e9 / size for a, size in model_bytes.items()}
    for c in comparisons:
        c["decode_tokens_per_s_bandwidth_bound"] = round(bound[c["aligner"]], 1)
    header = run_header(
        "drafted vs plain greedy decoding: the backend beside llama-cpp-python's prompt lookup, "
        "and prefix reuse, llama.cpp",
        load_at_start, n_threads=args.threads, llama_cpp_python=llama_cpp_version(),
    )
    result = _merge(args.out, header, comparisons)
    result.update({
        "model": {"name": DEFAULT_MODEL_NAME, "bytes": model_bytes},
        "aligners": {"default": f"{_model('default').name} (default_aligner_gguf(): "
                     f"{default_gguf_path().name} + {ADAPTER_GGUF.name} merged, F16)",
                     "base": f"{default_gguf_path().name} alone"},
        "workloads": DESCRIPTION,
        "variants": {
            "plain": "Llama.generate, greedy, no draft model",
            "stock_<n>": "Llama(draft_model=LlamaPromptLookupDecoding(num_pred_tokens=n)) "
            "(max_ngram_size 2, its default), Llama.generate, greedy",
            "backend": f"LlamaCppBackend, drafting=True: {_backend_drafting()}",
        },
        "settings": {
            "n_batch": EXACT_BATCH, "flash_attn": True, "prompt_format": DEFAULT_PROMPT_FORMAT,
            "kept_fraction": KEPT_FRACTION,
            "decode_tokens_per_s": "(completion tokens - 1) / time after the first token",
            "call_tokens_per_s": "completion tokens / whole call (prompt evaluation included)",
            "vs_best_peer": "backend decode tokens/s / the best stock variant's",
            "ideal_speedup": "plain decode time over the time the all-logits forward-cost curve "
            "allows when every copied token is accepted in the cheapest chunking (chunks of "
            "2-32 tokens) and every other token takes a plain decoding step (its measured time)",
        },
    })
    result.setdefault("forward_cost_ms", {}).update(costs)
    if not args.no_ttft:
        result["time_to_first_token"] = _time_to_first_token(args.ttft_rounds, args.threads)
    if args.memory:
        result["peak_rss_mb_fresh_process"] = _peak_rss(args)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    by_name = {c["workload"]: c for c in result["comparisons"]}
    ttft = result.get("time_to_first_token", {}).get("ratio")
    result["targets"] = targets(by_name, ttft, speedup=2, kept=0.9)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["targets"]), f"\nwrote {args.out}")


def _merge(path: Path, header: dict, comparisons: list[dict]) -> dict:
    """This run's records, and those of workloads it did not run kept from `path` (each record
    carries its own date and command). A shard of a workload (`--shard I N`) joins the other
    shards of the same split recorded there: their items are summed up as one set."""
    run = {"date": header["date"], "command": header["command"],
           "load_average": [header["machine"]["load_average_at_start"],
                            header["machine"]["load_average_at_end"]]}
    for c in comparisons:
        c["run"] = run
        for row in c["per_item"]:
            row["run"] = run["date"]
    old = json.loads(path.read_text()) if path.is_file() else {}
    previous = {c["workload"]: c for c in old.get("comparisons", []) if "variants" in c}
    for i, c in enumerate(comparisons):
        before = previous.get(c["workload"])
        if not (c.get("shards") and before and before.get("shards")):
            continue
        split = {n for _, n in before["shards"]} | {n for _, n in c["shards"]}
        done = {i for i, _ in before["shards"]}
        if len(split) == 1 and c["shards"][0][0] not in done and set(before["variants"]) == set(c["variants"]):
            rows = before["per_item"] + c["per_item"]
            merged = _summarize(c["workload"], rows, list(c["variants"]))
            runs = before.get("runs", [before["run"]]) + [run]
            comparisons[i] = {**c, **merged, "shards": before["shards"] + c["shards"], "runs": runs}
    names = {c["workload"] for c in comparisons}
    kept = [c for c in previous.values() if c["workload"] not in names]
    order = list(ALIGNER)
    merged = sorted(kept + comparisons, key=lambda c: order.index(c["workload"]))
    keep = {k: old[k] for k in ("forward_cost_ms", "time_to_first_token", "peak_rss_mb_fresh_process")
            if k in old and kept}
    return {**header, **keep, "comparisons": merged}


class _Raw:
    """A bare `Llama` (optionally with llama-cpp-python's prompt lookup) streamed like a backend.

    With a draft model `Llama` evaluates with logits at every position, but sizes its logits
    buffer by the `logits_all` argument: with 32-token batches it must be passed too."""

    def __init__(self, path: Path, threads: int, num_pred_tokens: int | None):
        from llama_cpp import Llama
        from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

        draft = None if num_pred_tokens is None else LlamaPromptLookupDecoding(num_pred_tokens=num_pred_tokens)
        self.llama = Llama(model_path=str(path), n_ctx=2048, n_threads=threads,
                           n_threads_batch=threads, flash_attn=True, n_batch=EXACT_BATCH,
                           draft_model=draft, logits_all=draft is not None, verbose=False)

    def stream(self, prompt: str, settings: GenerationSettings, response: str | None = None):
        import llama_cpp

        llama = self.llama

        def produce(emit, stop) -> Generation:
            tokens = llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
            out, reason = [], "length"
            for token in llama.generate(tokens, temp=0.0, top_p=1.0, top_k=0, min_p=0.0,
                                        typical_p=1.0, repeat_penalty=1.0):
                if llama_cpp.llama_vocab_is_eog(llama._model.vocab, token):
                    reason = "stop"
                    break
                out.append(token)
                emit(token)
                if len(out) >= settings.max_new_tokens:
                    break
            text = llama.detokenize(out).decode("utf-8", errors="replace")
            return Generation(text, reason, len(tokens), len(out))  # EOS not counted, as the backend

        return stream_in_worker(produce)

    def close(self) -> None:
        self.llama.close()


def _variants(aligner: str, threads: int, lookup: list[int]) -> dict:
    path = _model(aligner)
    variants = {"plain": _Raw(path, threads, None)}
    variants.update({f"stock_{n}": _Raw(path, threads, n) for n in lookup})
    variants["backend"] = LlamaCppBackend(path, n_threads=threads)
    warm = GenerationSettings(max_new_tokens=2)
    for variant in variants.values():
        timed_stream(variant.stream("Hello", warm))
    return variants


def _backend_drafting() -> str:
    """What `drafting=True` runs in the backend at this commit."""
    from metaaligner_chain.backends.llamacpp import decoding as module

    lookup = getattr(module, "LOOKUP_TOKENS", None)
    if lookup:
        return f"llama-cpp-python's LlamaPromptLookupDecoding(num_pred_tokens={lookup})"
    return f"the package's own copy-aware drafting (CopyDrafter, {getattr(module, 'DRAFTER', '')})"


def _compare(variants: dict, name: str, items: list[dict], max_new_tokens: int, curve: dict,
             repeats: int) -> dict:
    """Every item decoded by every variant, order rotating item by item, `repeats` times."""
    names = list(variants)
    settings = GenerationSettings(max_new_tokens=max_new_tokens)
    rows = []
    for i, item in enumerate(items):
        prompt = build_prompt(item["query"], item["response"], item["objectives"])
        runs: dict[str, list[dict]] = defaultdict(list)
        for repeat in range(repeats):
            shift = (i + repeat) % len(names)
            for v in names[shift:] + names[:shift]:
                runs[v].append(_timed(variants[v], prompt, item["response"], settings))
        plain = runs["plain"][0]
        tokens = _tokenize(variants["backend"], plain["text"])
        blocks = copied_blocks(_tokenize(variants["backend"], item["response"]), tokens)
        rows.append({
            "id": item.get("id", i),
            "completion_tokens": plain["completion_tokens"],
            "kept_fraction": round(sum(blocks) / max(len(tokens), 1), 3),
            "ideal_decode_s": _ideal_seconds(len(tokens), blocks, curve["all_logits_ms"],
                                             _step_s(runs["plain"])),
            "variants": {
                v: {
                    "decode_s": sum(r["decode_s"] for r in rs) / repeats,
                    "ttft_s": rs[0]["ttft_s"],  # the first run: later ones find the prompt cached
                    "identical": all(
                        (r["text"], r["completion_tokens"]) == (plain["text"], plain["completion_tokens"])
                        for r in rs),
                    **({"stats": rs[0]["stats"]} if rs[0]["stats"] else {}),
                }
                for v, rs in runs.items()
            },
            "aligned": plain["text"][:160],
        })
    return _summarize(name, rows, names)


def _summarize(name: str, rows: list[dict], names: list[str]) -> dict:
    decoded = sum(max(r["completion_tokens"] - 1, 0) for r in rows)
    completion = sum(r["completion_tokens"] for r in rows)
    ideal_s = sum(r["ideal_decode_s"] for r in rows)
    seconds = {v: sum(r["variants"][v]["decode_s"] for r in rows) for v in names}
    ttft = {v: sum(r["variants"][v]["ttft_s"] for r in rows) for v in names}
    variants = {}
    for v in names:
        speedup = seconds["plain"] / seconds[v]
        record = {
            "decode_tokens_per_s": round(decoded / seconds[v], 1),
            "speedup": round(speedup, 3),
            "call_tokens_per_s": round(completion / (seconds[v] + ttft[v]), 1),
            "call_speedup": round((seconds["plain"] + ttft["plain"]) / (seconds[v] + ttft[v]), 3),
            "ttft_ms_mean": round(1000 * ttft[v] / len(rows), 1),
            "identical_to_plain": sum(r["variants"][v]["identical"] for r in rows),
        }
        if v != "plain":
            record["fraction_of_ideal"] = round(speedup / (seconds["plain"] / ideal_s), 3)
        stats = [r["variants"][v]["stats"] for r in rows if "stats" in r["variants"][v]]
        if stats:
            drafted = sum(s.get("drafted_tokens", 0) for s in stats)
            accepted = sum(s.get("accepted_tokens", 0) for s in stats)
            record.update(drafted_tokens=drafted, accepted_tokens=accepted,
                          acceptance=round(accepted / max(drafted, 1), 3))
        variants[v] = record
    stock = {v: r for v, r in variants.items() if v.startswith("stock_")}
    best = max(stock, key=lambda v: stock[v]["decode_tokens_per_s"])
    best_call = max(stock, key=lambda v: stock[v]["call_tokens_per_s"])
    return {
        "backend": "llama.cpp",
        "workload": name,
        "items": len(rows),
        "kept_fraction": round(statistics.mean(r["kept_fraction"] for r in rows), 3),
        "completion_tokens": completion,
        "ideal_speedup": round(seconds["plain"] / ideal_s, 3),
        "variants": variants,
        "best_peer": best,
        "vs_best_peer": round(variants["backend"]["decode_tokens_per_s"]
                              / stock[best]["decode_tokens_per_s"], 3),
        "vs_best_peer_call": round(variants["backend"]["call_tokens_per_s"]
                                   / stock[best_call]["call_tokens_per_s"], 3),
        "per_item": rows,
    }


def _summary(c: dict) -> str:
    parts = [f"{v} {r['decode_tokens_per_s']} tok/s ({r['speedup']:.2f}x, "
             f"{r['identical_to_plain']}/{c['items']} identical)" for v, r in c["variants"].items()]
    return (f"{c['workload']} ({c['items']} items, kept {c['kept_fraction']}): " + "; ".join(parts)
            + f"; backend / best stock {c['vs_best_peer']} (call {c['vs_best_peer_call']})")


def _timed(variant, prompt: str, response: str, settings: GenerationSettings) -> dict:
    generation, ttft_s, decode_s = timed_stream(variant.stream(prompt, settings, response))
    stats = generation.stats or {}
    return {
        "text": generation.text,
        "completion_tokens": generation.completion_tokens,
        "decode_s": decode_s,
        "ttft_s": ttft_s,
        "stats": {k: stats[k] for k in ("drafted_tokens", "accepted_tokens", "forward_passes")
                  if k in stats},
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


def _time_to_first_token(rounds: int, threads: int) -> dict:
    """Calls alternating between two ~300-token objective preambles, with and without snapshots."""
    from benchmarks.workloads import LOW_COPY

    reuse = _backend("default", n_threads=threads)
    plain = _backend("default", n_threads=threads, prefix_cache=0)
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


#: What each fresh process aligns for `--memory`: the first held-out items.
RSS_ITEMS = 6


def _peak_rss(args: argparse.Namespace) -> dict[str, float]:
    """Peak resident memory (VmHWM, MB) of a fresh process per variant on the default aligner."""
    out = {}
    for variant in ["plain", *(f"stock_{n}" for n in args.lookup), "backend"]:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_drafting_llamacpp", "--measure-rss", variant,
             "--threads", str(args.threads)],
            capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1],
        )
        out[variant] = float(done.stdout.strip().splitlines()[-1])
    return out


def _report_rss(args: argparse.Namespace) -> None:
    """In a fresh process: load one variant, align `RSS_ITEMS` held-out items, print VmHWM."""
    name = args.measure_rss
    path = _model("default")
    if name == "backend":
        variant = LlamaCppBackend(path, n_threads=args.threads)
    else:
        variant = _Raw(path, args.threads, None if name == "plain" else int(name.split("_")[1]))
    settings = GenerationSettings(max_new_tokens=MAX_NEW_TOKENS["heldout"])
    for item in workload("heldout")[:RSS_ITEMS]:
        prompt = build_prompt(item["query"], item["response"], item["objectives"])
        timed_stream(variant.stream(prompt, settings, item["response"]))
    with open("/proc/self/status") as status:  # this process's own peak, not the parent's
        print(next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024)
    variant.close()


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
    parser.add_argument("--workloads", nargs="+", default=list(ALIGNER), choices=list(ALIGNER))
    parser.add_argument("--lookup", type=int, nargs="+", default=list(LOOKUP),
                        help="num_pred_tokens of the stock prompt-lookup variants")
    parser.add_argument("--items", type=int, default=None, help="first N items of each workload")
    parser.add_argument("--every", type=int, default=1, help="every K-th held-out item")
    parser.add_argument("--shard", type=int, nargs=2, default=[0, 1], metavar=("I", "N"),
                        help="items I, I+N, I+2N, ... of each workload; the N shards of a split "
                        "merge into one record in the results file")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per item and variant")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help=f"for every workload (default: {MAX_NEW_TOKENS})")
    parser.add_argument("--threads", type=int, default=default_threads(), help="llama.cpp threads")
    parser.add_argument("--ttft-rounds", type=int, default=4)
    parser.add_argument("--no-ttft", action="store_true", help="skip the prefix-reuse timing")
    parser.add_argument("--memory", action="store_true",
                        help="peak RSS of each variant in a fresh process")
    parser.add_argument("--measure-rss", metavar="VARIANT", help=argparse.SUPPRESS)
    parser.add_argument("--bandwidth-gbs", type=float, default=26.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args()


if __name__ == "__main__":
    main()
