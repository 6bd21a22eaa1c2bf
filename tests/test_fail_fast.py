"""A misconfigured aligner fails at construction or first use with an error that says what to fix,
whatever `strict` is; it never hides behind the gate's per-call fallback (issue 16, item 8).
Offline: the hub and servers are unreachable loopback ports; no test waits on a network timeout."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from langchain_core.messages import AIMessage

from metaaligner_chain import MetaAlignerRunnable
from metaaligner_chain.backends import AlignerConfigError
from metaaligner_chain.models.hub import hub_load_options
from metaaligner_chain.models.metadata import write_metadata

OBJECTIVES = ["harmlessness"]


def _refused_url() -> str:
    """An http address on which nothing listens: connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def broken_model(tmp_path):
    folder = tmp_path / "HH-RLHF-broken"
    folder.mkdir()  # exists, but holds no model
    return str(folder)


@pytest.mark.parametrize("strict", [False, True])
async def test_a_model_that_does_not_load_is_raised_by_every_call(broken_model, strict):
    aligner = MetaAlignerRunnable(objectives=OBJECTIVES, model=broken_model, strict=strict)
    message = f"cannot be set up \\(transformers backend, model '{broken_model}'\\)"
    with pytest.raises(AlignerConfigError, match=message) as raised:
        aligner.invoke(AIMessage("Keep me."))
    assert isinstance(raised.value, ValueError) and isinstance(raised.value.__cause__, OSError)
    with pytest.raises(AlignerConfigError, match=message):
        aligner.batch(["Keep me.", "And me."])
    assert all(isinstance(r, AlignerConfigError)
               for r in aligner.batch(["Keep me.", "And me."], return_exceptions=True))
    with pytest.raises(AlignerConfigError, match=message):
        await aligner.ainvoke("Keep me.")
    with pytest.raises(AlignerConfigError, match=message):
        await aligner.abatch(["Keep me."])


def test_a_model_that_does_not_load_is_raised_by_stream(broken_model):
    aligner = MetaAlignerRunnable(objectives=OBJECTIVES, model=broken_model)
    with pytest.raises(AlignerConfigError, match="cannot be set up"):
        list(aligner.stream("Keep me."))


def test_a_corrupt_gguf_is_raised_at_first_use(tmp_path):
    model = tmp_path / "aligner.gguf"
    model.write_bytes(b"GGUF" + b"\x00" * 64)
    aligner = MetaAlignerRunnable(objectives=OBJECTIVES, model=str(model), prompt_format="hh-rlhf")
    with pytest.raises(AlignerConfigError, match=r"llama.cpp backend, model '.*aligner.gguf'"):
        aligner.invoke("Keep me.")


def test_an_unreachable_server_is_raised_at_first_use():
    base_url = f"{_refused_url()}/v1"
    aligner = MetaAlignerRunnable(
        objectives=OBJECTIVES, base_url=base_url, prompt_format="hh-rlhf", max_retries=0
    )
    start = time.monotonic()
    with pytest.raises(AlignerConfigError, match=r"cannot reach the aligner server at `base_url` .*Start it"):
        aligner.invoke({"query": "q?", "response": AIMessage("an answer")})
    assert time.monotonic() - start < 5


def test_a_prompt_format_the_model_was_not_trained_with_is_refused_at_construction(tmp_path):
    trained = tmp_path / "my-aligner"
    trained.mkdir()
    write_metadata(trained, prompt_format="ultrafeedback")
    with pytest.raises(ValueError, match=r"`prompt_format` is 'hh-rlhf' but model .*my-aligner' was "
                       r"trained with 'ultrafeedback'.*Pass prompt_format='ultrafeedback'"):
        MetaAlignerRunnable(objectives=["honesty"], model=str(trained), prompt_format="hh-rlhf")
    with pytest.raises(ValueError, match="built-in default' was trained with 'hh-rlhf'"):
        MetaAlignerRunnable(objectives=["honesty"], prompt_format="ultrafeedback")
    assert MetaAlignerRunnable(objectives=["honesty"], model=str(trained),
                               prompt_format="ultrafeedback").resolved_prompt_format() == "ultrafeedback"


# -- hub ids: checked at once, `HF_HUB_OFFLINE` honoured -----------------------------------------


def test_an_unknown_hub_id_with_the_hub_unreachable_fails_at_once(monkeypatch):
    import huggingface_hub
    import transformers  # noqa: F401  (imported before the clock starts)
    from huggingface_hub import constants, hf_api

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_api.api, "endpoint", _refused_url())  # what `model_info` asks
    aligner = MetaAlignerRunnable(
        objectives=OBJECTIVES, model="no-such-org/no-such-model", prompt_format="hh-rlhf"
    )
    start = time.monotonic()
    with pytest.raises(AlignerConfigError, match=r"the hub cannot be reached .* not in the local "
                       r"hub cache\. Pass a local model directory or \.gguf file as `model`, or set "
                       r"HF_HUB_OFFLINE=1"):
        aligner.invoke("Keep me.")
    assert time.monotonic() - start < 5  # from_pretrained alone retried for ~50 s
    assert huggingface_hub.is_offline_mode() is False


@pytest.fixture
def hub_without_models():
    """A loopback stand-in for the hub that knows no model: 404 with the hub's RepoNotFound code."""

    class NotFound(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b'{"error": "Repository not found"}'
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_hub_id_the_hub_does_not_know_fails_at_once(hub_without_models, monkeypatch):
    from huggingface_hub import constants, hf_api

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_api.api, "endpoint", hub_without_models)
    aligner = MetaAlignerRunnable(objectives=OBJECTIVES, model="no-such-org/no-such-model",
                                  prompt_format="hh-rlhf")
    with pytest.raises(AlignerConfigError, match=r"'no-such-org/no-such-model' is not a model on "
                       r"the hub \(or it is private: log in with `hf auth login`\)"):
        aligner.invoke("Keep me.")


def test_a_cached_hub_model_is_used_when_the_hub_is_unreachable(tmp_path, monkeypatch):
    from huggingface_hub import constants, hf_api

    _cache_model(tmp_path / "hub", "tiny-org/tiny-aligner", {"config.json": "{}"})
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_api.api, "endpoint", _refused_url())
    assert hub_load_options("tiny-org/tiny-aligner") == {"local_files_only": True}
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert hub_load_options("tiny-org/tiny-aligner") == {}  # the libraries read the cache offline
    with pytest.raises(OSError, match=r"neither an existing path nor a hub id"):
        hub_load_options("not a/hub id/at all")


_OFFLINE_RUN = textwrap.dedent("""
    import json, sys, time
    import transformers  # imported before the clock starts
    from metaaligner_chain import MetaAlignerRunnable
    from metaaligner_chain.backends import AlignerConfigError, GenerationSettings

    out = {}
    aligner = MetaAlignerRunnable(objectives=["harmlessness"], model="no-such-org/no-such-model",
                                  prompt_format="hh-rlhf")
    start = time.monotonic()
    try:
        aligner.invoke("Keep me.")
    except AlignerConfigError as exc:
        out["error"], out["seconds"] = str(exc), time.monotonic() - start
    settings = GenerationSettings(max_new_tokens=6)
    for key, model in (("cached", "tiny-org/tiny-aligner"), ("local", sys.argv[1])):
        aligner = MetaAlignerRunnable(objectives=["harmlessness"], model=model, prompt_format="hh-rlhf")
        out[key] = aligner.load_backend().generate(["Sleep eight hours."], settings)[0].text
    print(json.dumps(out))
""")


def test_hf_hub_offline_is_honoured(tiny_model_dir, tmp_path):
    """With HF_HUB_OFFLINE=1 an unknown hub id fails at once, saying the hub is offline and what
    to pass instead; a hub id in the local cache loads from it."""
    _cache_model(tmp_path / "hub", "tiny-org/tiny-aligner", tiny_model_dir)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"),
           "HF_ENDPOINT": _refused_url()}
    run = subprocess.run([sys.executable, "-c", _OFFLINE_RUN, str(tiny_model_dir)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert "the hub is offline (HF_HUB_OFFLINE is set)" in out["error"]
    assert "Pass a local model directory or .gguf file as `model`" in out["error"]
    assert "hf download no-such-org/no-such-model" in out["error"]
    assert out["seconds"] < 5
    assert out["cached"] == out["local"] != ""  # the cached copy is the same model


def _cache_model(cache, repo_id: str, files) -> None:
    """Lay out `files` (a folder, or {name: text}) as the hub cache's copy of `repo_id`."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / ("0" * 40)
    if isinstance(files, dict):
        snapshot.mkdir(parents=True)
        for name, text in files.items():
            (snapshot / name).write_text(text)
    else:
        shutil.copytree(files, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
