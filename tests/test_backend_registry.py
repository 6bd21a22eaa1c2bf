"""Engines by name: a new engine registered with `register_backend` gets the runnable's behaviours
by declaring `Capabilities`, never by its name."""

from __future__ import annotations

import sys
import types

import pytest
from langchain_core.messages import AIMessage

from metaaligner_chain import MetaAlignerRunnable
from metaaligner_chain import backends
from metaaligner_chain.backends import Capabilities, Generation, choose_backend, get_backend
from metaaligner_chain.gate import ECHO_REASON


class EchoEngine:
    """Writes its prompt back, one character a piece (what a weak aligner sometimes does)."""

    name = "echo-engine"
    context_length = 4096
    metadata: dict = {}

    def __init__(self, model: str, early_stop: bool = False, concurrency: int = 1):
        self.model = model
        self.capabilities = Capabilities(early_stop=early_stop, concurrency=concurrency)
        self.pieces_sent = 0
        self.generate_calls = 0

    def generate(self, prompts, settings, responses=None):
        self.generate_calls += 1
        return [Generation(p, "length", 0, len(p)) for p in prompts]

    def stream(self, prompt, settings, response=None):
        for character in prompt:
            self.pieces_sent += 1
            yield character
        return Generation(prompt, "length", 0, len(prompt))


@pytest.fixture
def echo_engine(monkeypatch):
    package = types.ModuleType("echo_engine_package")
    package.load = lambda model, **options: EchoEngine(model, **options)
    package.default_aligner = lambda options: ("echo", options)
    monkeypatch.setitem(sys.modules, "echo_engine_package", package)
    monkeypatch.setitem(backends._REGISTRY, "echo", "echo_engine_package")
    yield
    backends.clear_backends()


@pytest.mark.parametrize("early_stop", [True, False])
def test_a_registered_engine_gets_the_early_stop_by_declaring_it(echo_engine, early_stop):
    aligner = MetaAlignerRunnable(
        objectives=["harmlessness"], model="echo", backend="echo", prompt_format="hh-rlhf",
        backend_options={"early_stop": early_stop, "concurrency": 4},
    )
    items = [{"query": f"Question {i}?", "response": AIMessage(f"Answer {i}.")} for i in range(6)]
    results = [r["response"] for r in aligner.batch(items)]
    assert [r.content for r in results] == [item["response"].content for item in items]
    assert all(r.response_metadata["metaaligner"]["fallback_reason"] == ECHO_REASON for r in results)
    engine = aligner.load_backend()
    if early_stop:  # streamed, cut where the echo shows: far less than the prompts' length
        assert engine.generate_calls == 0
        assert engine.pieces_sent < 6 * 200
    else:  # batched in one `generate`
        assert engine.generate_calls == 1 and engine.pieces_sent == 0


def test_names_resolve_through_the_registry():
    assert set(backends.BACKENDS) == {"transformers", "llama.cpp", "endpoint"}
    assert choose_backend(None) == "llama.cpp"  # the built-in default is a GGUF
    with pytest.raises(ValueError, match="`backend` is 'vllm'; choose 'auto' or one of"):
        choose_backend("m", "vllm")
    with pytest.raises(ValueError, match="choose one of"):
        get_backend("vllm", "m")
