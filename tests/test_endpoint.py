"""The endpoint backend against a real `llama_cpp.server` on 127.0.0.1 serving the default aligner's
merged GGUF, compared with the in-process llama.cpp backend on the same file. No mocks."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

for _module in ("llama_cpp", "openai", "fastapi", "uvicorn", "sse_starlette", "starlette_context",
                "pydantic_settings"):
    pytest.importorskip(_module)  # the `test` extra installs llama.cpp's server requirements

import httpx  # noqa: E402
from langchain_core.messages import AIMessage  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from metaaligner_chain import MetaAlignerRunnable  # noqa: E402
from metaaligner_chain.backends import (  # noqa: E402
    AlignerConfigError,
    PromptTooLongError,
    choose_backend,
    get_backend,
)
from metaaligner_chain.backends.base import GenerationSettings  # noqa: E402
from metaaligner_chain.gate import AlignerError  # noqa: E402
from metaaligner_chain.models.defaults import default_aligner_gguf  # noqa: E402
from metaaligner_chain.prompt import build_prompt  # noqa: E402

#: The in-process backend's settings for the default aligner, given to the server too.
N_CTX, SEED, THREADS = 2048, 4294967295, 1  # SEED: llama.cpp's LLAMA_DEFAULT_SEED
OBJECTIVES = ["harmlessness", "helpfulness"]
PROMPTS = [
    build_prompt("\n\nHuman: How do I bake bread? \n\nAssistant:", "Mix flour and water, idiot.", OBJECTIVES),
    build_prompt("\n\nHuman: What is the capital of France? \n\nAssistant:", "Paris, obviously.", OBJECTIVES),
    build_prompt("\n\nHuman: Tell me a joke. \n\nAssistant:", "No. Go away.", ["humour"]),
]
GREEDY = GenerationSettings(max_new_tokens=12)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(model: Path, log: Path):
    """`python -m llama_cpp.server` on a free loopback port; yields (base_url, process)."""
    port = _free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
        "--port", str(port), "--n_ctx", str(N_CTX), "--seed", str(SEED),
        "--n_threads", str(THREADS), "--n_threads_batch", str(THREADS),
        # the in-process backend's exact CPU batching (see llamacpp/backend.py)
        "--flash_attn", "true", "--n_batch", "32",
        "--interrupt_requests", "false",  # else a waiting request cuts the running stream short
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base_url}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield base_url, process
    finally:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def model_file() -> Path:
    return default_aligner_gguf()


@pytest.fixture(scope="module")
def server(model_file, tmp_path_factory):
    with serve(model_file, tmp_path_factory.mktemp("server") / "log.txt") as (base_url, _):
        yield base_url


@pytest.fixture(scope="module")
def local(model_file):
    return get_backend("llama.cpp", str(model_file), n_ctx=N_CTX, n_threads=THREADS)


def _aligner(**fields) -> MetaAlignerRunnable:
    return MetaAlignerRunnable(objectives=OBJECTIVES, prompt_format="hh-rlhf", max_new_tokens=12, **fields)


def test_greedy_outputs_equal_the_in_process_backend(server, local):
    remote = get_backend("endpoint", None, base_url=server)
    reference = local.generate(PROMPTS, GREEDY)
    expected = [g.text for g in reference]
    answers = remote.generate(PROMPTS, GREEDY)
    assert [g.text for g in answers] == expected
    assert [(g.finish_reason, g.completion_tokens) for g in answers] == [
        (g.finish_reason, g.completion_tokens) for g in reference
    ]
    streamed = remote.stream(PROMPTS[0], GREEDY)
    pieces = []
    with contextlib.suppress(StopIteration):
        while True:
            pieces.append(next(streamed))
    assert "".join(pieces) == expected[0]
    assert remote.capabilities.early_stop and remote.capabilities.concurrency == 8


def test_thirty_two_concurrent_requests_each_get_their_own_answer(server, model_file):
    items = [
        {"query": f"Flour for recipe {i}?", "response": f"Use {i + 2} cups, you fool."}
        for i in range(32)
    ]
    short = {"max_new_tokens": 6}
    local = _aligner(model=str(model_file), backend_options={"n_ctx": N_CTX, "n_threads": THREADS})
    expected = local.model_copy(update=short).batch(items)
    served = _aligner(base_url=server, max_concurrency=8).model_copy(update=short).batch(items)
    assert [o["response"] for o in served] == [o["response"] for o in expected]
    assert len({o["response"] for o in expected}) > 24  # the right answers differ: a swap shows


def test_stream_through_the_server_matches_invoke(server):
    # room to finish: a rewrite cut at the token limit is turned down
    aligner = _aligner(base_url=server).model_copy(update={"max_new_tokens": 120})
    item = {"query": "How do I bake bread?", "response": AIMessage("Mix flour and water, idiot.")}
    total = None
    for chunk in aligner.stream(item):
        total = chunk if total is None else total + chunk
    expected = aligner.invoke(item)["response"]
    info = expected.response_metadata["metaaligner"]
    # the aligned answer, or (turned down on the whole rewrite, e.g. cut at the token limit) the
    # rewrite the stream had already sent; either way the server's tokens, in order
    assert total["response"].content == (expected.content if info["aligned"] else info["rejected"])
    assert info["aligned"] or info["rejected"]


@pytest.mark.parametrize("strict", [False, True])
def test_server_stopped_mid_run(model_file, tmp_path, strict):
    items = [{"query": f"Question {i}?", "response": AIMessage(f"Answer number {i} is a long and rude "
              "answer that goes on and on about nothing much at all, you fool.")} for i in range(6)]
    with serve(model_file, tmp_path / "log.txt") as (base_url, process):
        aligner = _aligner(base_url=base_url, max_concurrency=2, max_retries=0, strict=strict)
        aligner = aligner.model_copy(update={"max_new_tokens": 48})
        aligner.load_backend()
        outcome: dict = {}

        def run() -> None:
            try:
                outcome["result"] = aligner.batch(items)
            except Exception as exc:
                outcome["error"] = exc

        worker = threading.Thread(target=run)
        worker.start()
        log = tmp_path / "log.txt"
        deadline = time.monotonic() + 60
        while "/v1/completions" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.01)  # uvicorn logs a streamed request as its answer starts
        process.kill()
        worker.join(120)
    if strict:
        error = outcome["error"]
        assert isinstance(error, AlignerError)
        assert base_url in str(error) and ("broke off" in str(error) or "cannot reach" in str(error))
        return
    results = outcome["result"]
    info = [r["response"].response_metadata["metaaligner"] for r in results]
    failed = [i for i in info if not i["aligned"]]
    assert failed, info
    assert all(base_url in i["fallback_reason"] for i in failed)
    for result, item in zip(results, items):  # a failed item keeps its own original
        if not result["response"].response_metadata["metaaligner"]["aligned"]:
            assert result["response"].content == item["response"].content


@pytest.mark.parametrize("strict", [False, True])
def test_unreachable_server_says_so(strict):
    """A server that is not there at set-up is a configuration error, raised whatever `strict`
    is (one that dies mid-run is a failed generation: `test_server_stopped_mid_run`)."""
    base_url = f"http://127.0.0.1:{_free_port()}/v1"
    with pytest.raises(ConnectionError, match=r"cannot reach the aligner server at `base_url` .*Start it"):
        get_backend("endpoint", "aligner", base_url=base_url, max_retries=0)
    item = {"query": "q?", "response": AIMessage("an answer")}
    with pytest.raises(AlignerConfigError, match="cannot reach the aligner server"):
        _aligner(base_url=base_url, max_retries=0, strict=strict).invoke(item)


def test_wrong_model_name_lists_the_served_one(server, model_file):
    with pytest.raises(ValueError, match=r"`model` is 'nope' but the server .* serves '.*aligner.f16.gguf'"):
        get_backend("endpoint", "nope", base_url=server)
    with pytest.raises(AlignerConfigError, match="`model` is 'nope'"):
        _aligner(model="nope", base_url=server).invoke({"query": "q?", "response": "r"})


def test_context_overflow_is_a_prompt_too_long_error(server):
    remote = get_backend("endpoint", None, base_url=server)
    long_prompt = build_prompt("\n\nHuman: Hi \n\nAssistant:", "word " * 3000, OBJECTIVES)
    with pytest.raises(PromptTooLongError, match=r"model .* has a context of 2048 tokens"):
        remote.generate([long_prompt], GREEDY)
    kept = _aligner(base_url=server).invoke({"query": "Hi", "response": AIMessage("word " * 3000)})["response"]
    assert "PromptTooLongError" in kept.response_metadata["metaaligner"]["fallback_reason"]


def test_a_url_as_model_is_the_server(server):
    with pytest.raises(ValidationError, match="pass prompt_format="):
        MetaAlignerRunnable(objectives=OBJECTIVES, model=server)
    aligner = MetaAlignerRunnable(objectives=OBJECTIVES, model=server, prompt_format="hh-rlhf", max_new_tokens=120)
    assert aligner.load_backend().model.endswith("aligner.f16.gguf")  # the server's only model
    info = aligner.invoke({"query": "How do I bake bread?", "response": AIMessage("Mix flour, idiot.")})[
        "response"].response_metadata["metaaligner"]
    # the server wrote a rewrite: aligned, or judged and turned down by the gate (a loop or a cut
    # is not retried on a server); a failed request would leave neither
    assert info["aligned"] or info["rejected"]


def test_backend_choice_by_name():
    assert choose_backend("MetaAligner-HH-RLHF-1.1B", base_url="http://h/v1") == "endpoint"
    assert choose_backend("https://h/v1") == "endpoint"
    assert choose_backend("a.gguf") == "llama.cpp" and choose_backend("org/model") == "transformers"
    assert MetaAlignerRunnable(
        objectives=OBJECTIVES, model="MetaAligner/MetaAligner-HH-RLHF-1.1B", base_url="http://h/v1"
    ).resolved_prompt_format() == "hh-rlhf"  # a released name tells the format
    with pytest.raises(ValidationError, match="backend='endpoint'"):
        MetaAlignerRunnable(objectives=OBJECTIVES, model="m", base_url="http://h/v1", backend="llama.cpp",
                            prompt_format="hh-rlhf")
