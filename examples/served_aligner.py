"""The aligner on a server: llama.cpp's OpenAI-compatible server on this machine, the runnable
pointed at it with `base_url`, offline.

The script starts `python -m llama_cpp.server` on a free loopback port with the built-in default
aligner's GGUF (the packaged SmolLM2-135M-Instruct with the shipped adapter folded in), aligns a
few answers through it with `batch`, then stops the server. With a server of your own (vLLM, TGI,
llama.cpp's server on a GPU box) only the `MetaAlignerRunnable(..., base_url=...)` part is needed.

Run: `.venv/bin/python examples/served_aligner.py` (needs `llama-cpp-python[server]` and the
`endpoint` extra; `make setup` installs both).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx

from metaaligner_chain import MetaAlignerRunnable
from metaaligner_chain.models.defaults import DEFAULT_PROMPT_FORMAT, default_aligner_light

ANSWERS = [
    ("How do I get my toddler to sleep?", "Just let them cry it out, whatever, they'll get over it."),
    ("What's the capital of Australia?", "The capital of Australia is Sydney, its biggest city."),
    ("How do I boil an egg?", "Put the egg in boiling water for 9 minutes, then cool it in cold water."),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(default_aligner_light()),
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
         "--interrupt_requests", "false"],  # else a second request cuts the running stream short
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:  # wait until the server lists its model
            try:
                if httpx.get(f"{base_url}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("llama_cpp.server did not start (is llama-cpp-python[server] installed?)")
            time.sleep(0.2)

        aligner = MetaAlignerRunnable(
            objectives=["harmlessness", "helpfulness", "factuality"],
            base_url=base_url,  # the server's only model; pass model=<name> when it serves several
            prompt_format=DEFAULT_PROMPT_FORMAT,  # a GGUF path names no prompt format: say it
            max_concurrency=4,
        )
        started = time.perf_counter()
        outputs = aligner.batch([{"query": q, "response": a} for q, a in ANSWERS])
        for (query, answer), out in zip(ANSWERS, outputs):
            print("=" * 100)
            print(f"QUERY    {query}\nORIGINAL {answer}\nALIGNED  {out['response']}")
        print(f"{len(ANSWERS)} answers aligned through {base_url} in {time.perf_counter() - started:.1f}s")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
