"""Several sequences in one llama.cpp batch: what it would buy the default aligner on this CPU.

Issue 17 asks for throughput under concurrency on llama.cpp, "several sequences decoded in one
batch through llama.cpp's batch API (or a documented reason why not)". This measures the ceiling
before building it: the same N held-out prompts, greedy, decoded

- `one at a time, plain`: the backend as it is, drafting off (`llama.generate`);
- `one at a time, drafted`: the backend as it is (copy-aware drafting): what one caller gets now;
- `N in one batch, unified KV` / `N in one batch, per-sequence KV`: a second llama.cpp context on
  the same loaded model with `n_seq_max = N`: each prompt prefilled in its own sequence (32-token
  batches, as the backend does, so logits match one-at-a-time decoding), then one token of every
  unfinished sequence per `llama_decode`. llama.cpp's KV cache is either one buffer that every
  sequence's attention scans (`kv_unified`, its default for several sequences) or one stream per
  sequence.

Reports whole-set seconds (prefill and decode apart for the batched ones), the ratio to the
drafted one-at-a-time run, and whether every output equals plain greedy decoding. Variants take
turns round by round. Writes `benchmarks/results/parallel_sequences.json`.

    python -m benchmarks.bench_parallel_sequences [--sizes 2 4 8] [--every 9] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from benchmarks.machine import llama_cpp_version, run_header
from benchmarks.workloads import held_out_inputs

RESULTS = Path(__file__).parent / "results" / "parallel_sequences.json"
#: One-at-a-time variants (the backend) and batched ones (`kv_unified` value).
BATCHED = {"N in one batch, unified KV": True, "N in one batch, per-sequence KV": False}
#: Context tokens given to each sequence of a batched run: the longest prompt plus new tokens fit.
ROOM = 1024


def main() -> None:
    from metaaligner_chain import MetaAlignerRunnable
    from metaaligner_chain.backends.base import GenerationSettings
    from metaaligner_chain.coerce import coerce

    args = _parse_args()
    load = os.getloadavg()
    runnable = MetaAlignerRunnable(objectives=["helpfulness"], backend="llama.cpp")
    backend, prompt_format = runnable.load_backend(), runnable._prompt_format()
    requests = [coerce(value) for value in held_out_inputs(args.every)]
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens)
    rows = {}
    for size in args.sizes:
        chosen = requests[:size]
        prompts = [runnable._prompt(r, prompt_format) for r in chosen]
        responses = [r.quoted for r in chosen]
        seconds: dict[str, float] = {}
        phases: dict[str, list[float]] = {}
        texts: dict[str, list[str]] = {}
        for _ in range(args.rounds):
            for name in ["one at a time, plain", "one at a time, drafted", *BATCHED]:
                start = time.perf_counter()
                if name in BATCHED:
                    outs, prefill = batched_greedy(backend, prompts, args.max_new_tokens, BATCHED[name])
                    phases.setdefault(name, [0.0, 0.0])
                    phases[name][0] += prefill
                    phases[name][1] += time.perf_counter() - start - prefill
                else:
                    drafted = name.endswith("drafted")
                    plain = GenerationSettings(max_new_tokens=args.max_new_tokens, drafting=drafted)
                    outs = [g.text for g in backend.generate(prompts, plain if not drafted else settings,
                                                             responses if drafted else None)]
                seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
                texts[name] = outs
        base = texts["one at a time, plain"]
        reference = seconds["one at a time, drafted"]
        rows[str(size)] = {
            name: {
                "seconds": round(s, 2),
                "vs_one_at_a_time_drafted": round(reference / s, 3),
                "identical_to_plain": sum(a == b for a, b in zip(texts[name], base)),
                **({"prefill_s": round(phases[name][0], 2), "decode_s": round(phases[name][1], 2)}
                   if name in phases else {}),
            }
            for name, s in seconds.items()
        }
        print(f"N={size}: {json.dumps(rows[str(size)])}", flush=True)
    result = {
        **run_header("several sequences in one llama.cpp batch vs one at a time, default aligner",
                     load, llama_cpp_python=llama_cpp_version()),
        "settings": {"every": args.every, "rounds": args.rounds, "max_new_tokens": args.max_new_tokens},
        "sizes": rows,
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


def batched_greedy(backend, prompts: list[str], max_new_tokens: int, unified: bool
                   ) -> tuple[list[str], float]:
    """Greedy completions of `prompts`, all sequences stepping together in one llama.cpp context
    on the backend's loaded model; (texts, seconds spent prefilling)."""
    import llama_cpp
    import numpy as np
    from llama_cpp import _internals

    from metaaligner_chain.backends.llamacpp.loading import EXACT_BATCH

    with backend.locked_llama() as llama:
        model, vocab, n_vocab = llama._model, llama._model.vocab, llama.n_vocab()
        tokens = [llama.tokenize(p.encode("utf-8"), add_bos=True, special=True) for p in prompts]
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = ROOM * len(prompts)
        params.n_batch = params.n_ubatch = EXACT_BATCH
        params.n_seq_max = len(prompts)
        params.n_threads = params.n_threads_batch = llama.context_params.n_threads_batch
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        params.kv_unified = unified
        ctx = _internals.LlamaContext(model=model, params=params, verbose=False)
        batch = _internals.LlamaBatch(n_tokens=EXACT_BATCH, embd=0, n_seq_max=len(prompts), verbose=False)
        try:
            start = time.perf_counter()

            def decode(entries: list[tuple[int, int, int, bool]]) -> None:
                raw = batch.batch
                raw.n_tokens = len(entries)
                for i, (token, pos, seq, logits) in enumerate(entries):
                    raw.token[i], raw.pos[i], raw.n_seq_id[i], raw.logits[i] = token, pos, 1, logits
                    raw.seq_id[i][0] = seq
                ctx.decode(batch)

            def argmax(row: int) -> int:
                return int(np.ctypeslib.as_array(ctx.get_logits_ith(row), shape=(n_vocab,)).argmax())

            outs: list[list[int]] = [[] for _ in prompts]
            active = []
            for seq, ids in enumerate(tokens):
                for at in range(0, len(ids), EXACT_BATCH):
                    chunk = ids[at:at + EXACT_BATCH]
                    decode([(t, at + i, seq, at + i == len(ids) - 1) for i, t in enumerate(chunk)])
                first = argmax(len(chunk) - 1)
                if not llama_cpp.llama_vocab_is_eog(vocab, first):
                    outs[seq].append(first)
                    active.append(seq)
            prefill = time.perf_counter() - start
            while active:
                stepping = [s for s in active if len(outs[s]) < max_new_tokens]
                for at in range(0, len(stepping), EXACT_BATCH):
                    group = stepping[at:at + EXACT_BATCH]
                    decode([(outs[s][-1], len(tokens[s]) + len(outs[s]) - 1, s, True) for s in group])
                    for row, s in enumerate(group):
                        token = argmax(row)
                        if llama_cpp.llama_vocab_is_eog(vocab, token):
                            active.remove(s)
                        else:
                            outs[s].append(token)
                active = [s for s in active if len(outs[s]) < max_new_tokens]
        finally:
            ctx.close()
            batch.close()
        texts = [llama.detokenize(out).decode("utf-8", errors="replace") for out in outs]
    return [t[1:] if t.startswith(" ") and backend._strip_first_space else t for t in texts], prefill


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--every", type=int, default=9, help="every K-th held-out item")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    return parser.parse_args()


if __name__ == "__main__":
    main()
