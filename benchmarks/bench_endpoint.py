"""Aligned answers per second through a served aligner (`base_url`) vs the same model in process.

The built-in default aligner's merged GGUF is served by `python -m llama_cpp.server` on 127.0.0.1
with the in-process backend's settings (context, seed, threads, flash attention, 32-token batches),
and the same COPY_HEAVY items (each with its own objectives) are aligned through
`MetaAlignerRunnable.batch` three ways, taking turns in each round:

- `in_process`: `model=<the GGUF>`, the llama.cpp backend with its copy-aware drafting (default);
- `in_process_plain`: the same with `drafting=False`, the decoding a server does;
- `served`: `base_url=<the server>`, `max_concurrency` requests in flight.

llama.cpp's server decodes one request at a time, so concurrency hides only the network and
request overhead there; a batching server (vLLM, TGI) on a GPU is where serving scales. Writes
`benchmarks/results/endpoint.json`.

    python -m benchmarks.bench_endpoint [--items 12] [--rounds 2] [--max-new-tokens 128] [--threads 1]

On a 2-core machine pass `--threads 1`: the server and this process each get a core.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.machine import llama_cpp_version, run_header
from benchmarks.workloads import COPY_HEAVY
from metaaligner_chain import MetaAlignerRunnable
from metaaligner_chain.models.defaults import default_aligner_gguf

RESULTS = Path(__file__).parent / "results" / "endpoint.json"
VARIANTS = ("in_process", "in_process_plain", "served")
N_CTX, SEED = 2048, 4294967295  # SEED: llama.cpp's LLAMA_DEFAULT_SEED, the in-process default


def main() -> None:
    args = _parse_args()
    model = default_aligner_gguf()
    items = COPY_HEAVY[: args.items]
    with tempfile.TemporaryDirectory() as folder, _serve(model, args.threads, Path(folder) / "log") as base_url:
        common = {"objectives": ["harmlessness"], "prompt_format": "hh-rlhf",
                  "max_new_tokens": args.max_new_tokens, "candidates": 1}
        local = {"model": str(model), "backend_options": {"n_ctx": N_CTX, "n_threads": args.threads}}
        aligners = {
            "in_process": MetaAlignerRunnable(**common, **local),
            "in_process_plain": MetaAlignerRunnable(**common, **local, drafting=False),
            "served": MetaAlignerRunnable(**common, base_url=base_url, max_concurrency=args.concurrency),
        }
        for aligner in aligners.values():  # load, and warm every cache, outside the timing
            aligner.batch(items[:1])
        seconds: dict[str, list[float]] = {v: [] for v in VARIANTS}
        answers: dict[str, list] = {}
        for round_ in range(args.rounds):
            for variant in VARIANTS[round_ % 3 :] + VARIANTS[: round_ % 3]:
                started = time.perf_counter()
                out = aligners[variant].batch(items)
                seconds[variant].append(time.perf_counter() - started)
                answers[variant] = [o["response"] for o in out]
    rate = {v: round(len(items) / statistics.median(s), 3) for v, s in seconds.items()}
    result = {
        **run_header(
            "aligned answers per second: served (llama_cpp.server) vs in process",
            args.load_at_start, n_threads=args.threads, llama_cpp_python=llama_cpp_version(),
        ),
        "model": f"{model.name} (default_aligner_gguf()), served by llama_cpp.server on 127.0.0.1",
        "settings": {"items": len(items), "rounds": args.rounds, "max_new_tokens": args.max_new_tokens,
                     "max_concurrency": args.concurrency, "n_ctx": N_CTX, "workload": "copy_heavy"},
        "answers_per_s": rate,
        "seconds": {v: [round(x, 2) for x in s] for v, s in seconds.items()},
        "served_vs_in_process": round(rate["served"] / rate["in_process"], 3),
        "served_vs_in_process_plain": round(rate["served"] / rate["in_process_plain"], 3),
        "identical_answers": len({tuple(a) for a in answers.values()}) == 1,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"answers/s {rate}; served/in-process {result['served_vs_in_process']}×, "
          f"served/in-process plain {result['served_vs_in_process_plain']}×; "
          f"identical {result['identical_answers']}")
    print(f"wrote {RESULTS}")


class _serve:
    """`python -m llama_cpp.server` with the in-process backend's settings, on a free port."""

    def __init__(self, model: Path, threads: int, log: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.command = [
            sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
            "--port", str(self.port), "--n_ctx", str(N_CTX), "--seed", str(SEED),
            "--n_threads", str(threads), "--n_threads_batch", str(threads),
            "--flash_attn", "true", "--n_batch", "32", "--interrupt_requests", "false",
        ]
        self.log = log

    def __enter__(self) -> str:
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT)
        base_url = f"http://127.0.0.1:{self.port}/v1"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if httpx.get(f"{base_url}/models", timeout=1).status_code == 200:
                    return base_url
            except httpx.HTTPError:
                time.sleep(0.2)
        self.__exit__()
        raise SystemExit(f"llama_cpp.server did not start:\n{self.log.read_text()[-3000:]}")

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(30)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=12, help=f"COPY_HEAVY items (at most {len(COPY_HEAVY)})")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads, each side")
    parser.add_argument("--concurrency", type=int, default=8, help="`max_concurrency` when served")
    args = parser.parse_args()
    args.load_at_start = os.getloadavg()
    return args


if __name__ == "__main__":
    main()
