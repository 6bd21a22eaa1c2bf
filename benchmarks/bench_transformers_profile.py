"""transformers on CPU: where a decoding step's time goes, measured on the default aligner.

Plain greedy decoding of the default aligner (fp32, the model `TransformersBackend` loads) runs at
under half of its memory bound (`bench_transformers_dtype`). This splits one decoding step after a
held-out prompt into the model body (the decoder layers) and the output head (the 49,152 x 576
embedding, tied), at one and at two threads, and times the head's product at the row counts
drafting verifies (1 to 32 rows, logits at every row) two ways: `F.linear(x, W)`, as transformers
calls it, and the same product in the other orientation, `(W @ x.T).T`. It also measures this
machine's read bandwidth (a 512 MB tensor summed, at each thread count), so the bound in this file
is this run's, not a figure from another host. Every timing is the median of `--rounds` rounds,
the variants interleaved within a round. Then whole calls: the first `--items` held-out items
aligned by `TransformersBackend` as the runnable runs it (greedy, drafting on), with
transformers' own head (`transposed_head=False`) and with the backend's default
(`metaaligner_chain/backends/transformers/head.py`), interleaved item by item, outputs compared.
Last, because one thread steps as fast as two: the same held-out prompts decoded plainly (greedy
`generate`, `--workers-tokens` new tokens each) one after another at two threads, and by two
Python threads at one intra-op thread each sharing the model, outputs compared: what two 1-thread
workers would give concurrent callers. Writes `benchmarks/results/transformers_profile.json`.

    python -m benchmarks.bench_transformers_profile [--rounds 7] [--steps 16] [--items 12]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from benchmarks.bench_default_quant import held_out_prompts
from benchmarks.machine import run_header
from metaaligner_chain.backends.transformers.drafting import cache_keyword

RESULTS = Path(__file__).parent / "results" / "transformers_profile.json"
THREADS = (1, 2)
HEAD_ROWS = (1, 2, 4, 8, 16, 32)


def read_bandwidth_gbs(torch, data, threads: int, repeats: int = 5) -> float:
    """GB/s of summing `data` (a large fp32 tensor) with `threads` threads (the best of `repeats`)."""
    torch.set_num_threads(threads)
    data.sum()
    best = _seconds(data.sum, repeats)
    return data.numel() * 4 / best / 1e9


def decode_step_ms(torch, lm, cache, token, steps: int) -> tuple[float, float]:
    """Median ms of the body's and the head's share of one-token steps at a fixed cache length
    (the step's token is cropped off the cache after each)."""
    body, head = [], []
    with torch.inference_mode():
        for _ in range(steps):
            started = time.perf_counter()
            hidden = lm.model(input_ids=token, use_cache=True, **{cache_keyword(lm.model): cache})
            hidden = hidden.last_hidden_state
            middle = time.perf_counter()
            lm.lm_head(hidden)
            ended = time.perf_counter()
            cache.crop(-1)  # back to the prompt: every step sees the same cache length
            body.append(middle - started)
            head.append(ended - middle)
    return 1e3 * statistics.median(body), 1e3 * statistics.median(head)


def main() -> None:
    args = _parser().parse_args()
    load = os.getloadavg()
    import torch
    from transformers import DynamicCache

    from metaaligner_chain.backends.transformers import TransformersBackend
    from metaaligner_chain.backends.transformers.head import TransposedHead
    from metaaligner_chain.models.defaults import default_aligner_hf_dir

    folder = default_aligner_hf_dir()
    # transformers' own head for the step profile and the two workers; both for the whole calls
    backends = {"transformers_head": TransformersBackend(str(folder), transposed_head=False),
                "transposed_head": TransformersBackend(str(folder))}
    lm, tokenizer = backends["transformers_head"].lm, backends["transformers_head"].tokenizer
    weights = lm.lm_head.weight
    transposed = TransposedHead(weights)
    weight_bytes = sum(p.numel() * p.element_size() for p in lm.parameters())

    prompts = held_out_prompts(args.items)
    ids = tokenizer(prompts[0][0], return_tensors="pt").input_ids
    context = ids.shape[1]
    cache = DynamicCache()
    with torch.inference_mode():
        lm.model(input_ids=ids, use_cache=True, **{cache_keyword(lm.model): cache})
    token = ids[:, -1:]
    data = torch.ones(128 * 1024 * 1024)  # 512 MB, read to measure the bandwidth

    bandwidth = {t: [] for t in THREADS}
    steps = {t: {"body": [], "head": []} for t in THREADS}
    heads = {m: {"linear": [], "transposed": []} for m in HEAD_ROWS}
    generator = torch.Generator().manual_seed(0)
    rows = {m: torch.randn(m, weights.shape[1], generator=generator) for m in HEAD_ROWS}
    for _ in range(args.rounds):
        for threads in THREADS:
            bandwidth[threads].append(read_bandwidth_gbs(torch, data, threads, repeats=2))
            torch.set_num_threads(threads)
            body, head = decode_step_ms(torch, lm, cache, token, args.steps)
            steps[threads]["body"].append(body)
            steps[threads]["head"].append(head)
        torch.set_num_threads(max(THREADS))
        with torch.inference_mode():
            for m, x in rows.items():
                heads[m]["linear"].append(
                    1e3 * _seconds(lambda: torch.nn.functional.linear(x, weights), 3))
                heads[m]["transposed"].append(1e3 * _seconds(lambda: transposed(x), 3))
    del data
    agreement = {}
    with torch.inference_mode():
        for m, x in rows.items():
            first, other = torch.nn.functional.linear(x, weights), transposed(x)
            agreement[m] = {
                "same_argmax_rows": int((first.argmax(-1) == other.argmax(-1)).sum()),
                "max_abs_difference": float((first - other).abs().max()),
            }

    calls = whole_calls(backends, prompts, args.max_new_tokens)
    workers = two_workers(torch, lm, tokenizer, prompts, args.workers_tokens)
    measured = {t: round(max(v), 1) for t, v in bandwidth.items()}
    step_ms = {}
    for threads, parts in steps.items():
        body, head = statistics.median(parts["body"]), statistics.median(parts["head"])
        total = body + head
        step_ms[str(threads)] = {
            "body_ms": round(body, 2), "head_ms": round(head, 2), "step_ms": round(total, 2),
            "head_share": round(head / total, 3),
            "tok_s": round(1e3 / total, 1),
            "share_of_measured_bound": round(weight_bytes / (total / 1e3) / 1e9 / measured[threads], 3),
        }
    head_ms = {}
    for m, ways in heads.items():
        linear, transposed = statistics.median(ways["linear"]), statistics.median(ways["transposed"])
        head_ms[str(m)] = {"linear_ms": round(linear, 2), "transposed_ms": round(transposed, 2),
                           "linear_over_transposed": round(linear / transposed, 2), **agreement[m]}
    result = {
        **run_header("where a transformers decoding step's time goes, default aligner, fp32", load,
                     torch=torch.__version__, blas=_blas(torch)),
        "model": str(folder.name),
        "weights_mb": round(weight_bytes / 1e6, 1),
        "context_tokens": context,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "read_bandwidth_gbs": {str(t): b for t, b in measured.items()},
        "decode_step": step_ms,
        "head_product": head_ms,
        "whole_calls": calls,
        "two_workers": workers,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("read_bandwidth_gbs", "decode_step", "head_product",
                                              "whole_calls", "two_workers")},
                     indent=1))
    print(f"wrote {args.out}")


def whole_calls(backends: dict, prompts: list[tuple[str, str]], max_new_tokens: int) -> dict:
    """Drafted greedy calls on `prompts` with each backend (head), interleaved (which goes first
    alternating): tokens/s over whole calls, and how many outputs are identical."""
    from metaaligner_chain.backends.base import GenerationSettings

    settings = GenerationSettings(max_new_tokens=max_new_tokens, drafting=True)
    tally = {name: {"seconds": 0.0, "tokens": 0} for name in backends}
    identical = 0
    for index, (prompt, answer) in enumerate(prompts):
        names = list(backends) if index % 2 == 0 else list(backends)[::-1]
        texts = {}
        for name in names:
            started = time.perf_counter()
            generation = backends[name].generate([prompt], settings, [answer])[0]
            tally[name]["seconds"] += time.perf_counter() - started
            tally[name]["tokens"] += generation.completion_tokens
            texts[name] = generation.text
        identical += len(set(texts.values())) == 1
    rates = {name: round(t["tokens"] / t["seconds"], 1) for name, t in tally.items()}
    return {
        "items": len(prompts),
        "max_new_tokens": max_new_tokens,
        "tok_s": rates,
        "transposed_over_transformers_head": round(
            rates["transposed_head"] / rates["transformers_head"], 3),
        "identical_outputs": identical,
        "transposed_head_in_use": backends["transposed_head"].transposed_head,
    }


def two_workers(torch, lm, tokenizer, prompts: list[tuple[str, str]], new_tokens: int) -> dict:
    """Plain greedy decoding of `prompts`: serially at two threads, then by two Python threads at
    one intra-op thread each (every other prompt each) sharing `lm`; seconds and identical outputs."""
    import threading

    encoded = [tokenizer(prompt, return_tensors="pt").input_ids for prompt, _ in prompts]
    outputs: dict[str, dict[int, list[int]]] = {"serial": {}, "workers": {}}

    def decode(kind: str, indexes) -> None:
        with torch.inference_mode():
            for i in indexes:
                out = lm.generate(encoded[i], max_new_tokens=new_tokens, do_sample=False)
                outputs[kind][i] = out[0, encoded[i].shape[1]:].tolist()

    torch.set_num_threads(2)
    started = time.perf_counter()
    decode("serial", range(len(encoded)))
    serial = time.perf_counter() - started
    torch.set_num_threads(1)
    threads = [threading.Thread(target=decode, args=("workers", range(k, len(encoded), 2)))
               for k in range(2)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    parallel = time.perf_counter() - started
    torch.set_num_threads(2)
    tokens = sum(len(o) for o in outputs["serial"].values())
    return {
        "prompts": len(encoded),
        "new_tokens_at_most": new_tokens,
        "serial_two_threads_tok_s": round(tokens / serial, 1),
        "two_workers_one_thread_tok_s": round(tokens / parallel, 1),
        "workers_over_serial": round(serial / parallel, 2),
        "identical_outputs": sum(outputs["serial"][i] == outputs["workers"][i] for i in outputs["serial"]),
    }


def _seconds(call, repeats: int = 1) -> float:
    """The fastest of `repeats` calls, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


def _blas(torch) -> str:
    config = torch.__config__.show()
    return "MKL" if "USE_MKL=ON" in config or "mkl" in config.lower() else "other"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=16, help="one-token steps timed per round")
    parser.add_argument("--items", type=int, default=12, help="held-out items for the whole calls")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--workers-tokens", type=int, default=64,
                        help="new tokens per prompt in the two-workers comparison")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser


if __name__ == "__main__":
    main()
