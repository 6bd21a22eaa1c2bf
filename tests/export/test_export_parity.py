"""Parity of exported GGUF files with the transformers model they came from (tiny trained llama).

Logits are compared position by position over whole prompts (BOS included on both sides: the
tiny tokenizer prepends it, and llama.cpp is asked to); greedy continuations must be identical,
token for token, up to and including end-of-sequence.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from langchain_core.messages import AIMessage

#: f32 GGUF with an f32 KV cache: the same float32 weights and float32 arithmetic; only the order
#: of the sums differs between the engines. Measured max |Δlogit| 3e-6 with |logits| up to 7.7;
#: 1e-4 (~30x) is float32 round-off, so any converter mistake (a transposed or mis-scaled weight,
#: a wrong rope or norm epsilon) fails it.
F32_ATOL = 1e-4
#: f16 GGUF with llama.cpp's default f16 KV cache (what users run): weights, cached keys/values and
#: the CPU matmul's activations are rounded to half precision (relative step 2^-11 ~ 5e-4).
#: Measured max |Δlogit| 3.6e-3 (f32 weights with the f16 cache alone: 1.3e-3); 2e-2 leaves ~5x
#: for other CPUs' kernels and thread counts, and stays well below the gaps greedy decoding rides
#: on (the greedy checks are exact).
F16_ATOL = 2e-2
NEW_TOKENS = 24


@pytest.fixture(scope="module")
def prompts(tiny_data):
    """Two aligner prompts from the training rows and one plain text the model never saw."""
    rows = [json.loads(line) for line in (tiny_data / "preference.jsonl").read_text().splitlines()]
    return [rows[0]["prompt"], rows[-1]["prompt"], "Plants use sunlight to make"]


@pytest.fixture(scope="module")
def hf(merged):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(merged)


def hf_logits(hf, prompt):
    import torch

    model, tokenizer = hf
    ids = tokenizer(prompt)["input_ids"]
    with torch.no_grad():
        return ids, model(torch.tensor([ids])).logits[0].numpy()


def hf_greedy(hf, prompt):
    import torch

    model, tokenizer = hf
    ids = torch.tensor([tokenizer(prompt)["input_ids"]])
    with torch.no_grad():
        out = model.generate(ids, do_sample=False, max_new_tokens=NEW_TOKENS)
    return out[0, ids.shape[1]:].tolist()


class Engine:
    """A llama.cpp model (optionally with a LoRA) evaluated token by token, all logits kept."""

    def __init__(self, path, lora=None, f32_cache=False):
        import llama_cpp

        cache = {"type_k": llama_cpp.GGML_TYPE_F32, "type_v": llama_cpp.GGML_TYPE_F32} if f32_cache else {}
        self.llama = llama_cpp.Llama(model_path=str(path), lora_path=lora and str(lora), logits_all=True,
                                     n_ctx=512, n_threads=2, verbose=False, **cache)

    def tokens(self, prompt):
        return self.llama.tokenize(prompt.encode(), add_bos=True, special=True)

    def logits(self, prompt):
        ids = self.tokens(prompt)
        self.llama.reset()
        self.llama.eval(ids)
        return ids, np.array(self.llama.scores[: len(ids)])

    def greedy(self, prompt):
        """Argmax decoding until EOS or NEW_TOKENS (the EOS token is included, as in HF)."""
        ids, _ = self.logits(prompt)
        new = []
        while len(new) < NEW_TOKENS:
            token = int(np.argmax(self.llama.scores[self.llama.n_tokens - 1]))
            new.append(token)
            if token == self.llama.token_eos():
                break
            self.llama.eval([token])
        return new

    def close(self):
        self.llama.close()


@pytest.fixture
def engine():
    opened = []

    def load(path, lora=None, f32_cache=False):
        opened.append(Engine(path, lora, f32_cache))
        return opened[-1]

    yield load
    for item in opened:
        item.close()


@pytest.mark.parametrize(("quant", "atol"), [("f32", F32_ATOL), ("f16", F16_ATOL)])
def test_logits_and_greedy_match_transformers(gguf, hf, prompts, engine, quant, atol):
    llama = engine(gguf(f"merged-{quant}"), f32_cache=quant == "f32")
    for prompt in prompts:
        ids, expected = hf_logits(hf, prompt)
        llama_ids, got = llama.logits(prompt)
        assert llama_ids == ids and ids[0] == hf[1].bos_token_id
        assert np.abs(expected).max() > 3, "the model should be trained, not near-uniform noise"
        diff = np.abs(got - expected).max()
        assert diff < atol, f"{quant}: max |Δlogit| {diff:.2e} over {len(ids)} positions"
        assert llama.greedy(prompt) == hf_greedy(hf, prompt)


def test_q8_0_loads_and_generates(gguf, hf, prompts, engine):
    from metaaligner_chain.backends.base import GenerationSettings
    from metaaligner_chain.backends.llamacpp import LlamaCppBackend

    path = gguf("merged-q8_0")
    assert path.stat().st_size < gguf("merged-f16").stat().st_size
    backend = LlamaCppBackend(path, n_ctx=512)
    try:
        out = backend.generate(prompts[:1], GenerationSettings(max_new_tokens=NEW_TOKENS))[0]
    finally:
        backend.close()
    assert out.completion_tokens > 0 and out.text.strip()
    # 8-bit weights stay close: the first greedy tokens agree with transformers here.
    assert engine(path).greedy(prompts[0])[:4] == hf_greedy(hf, prompts[0])[:4]


def test_lora_adapter_on_base_matches_merged(gguf, prompts, engine):
    merged = engine(gguf("merged-f32"), f32_cache=True)
    adapted = engine(gguf("base-f32"), lora=gguf("adapter-f32"), f32_cache=True)
    plain = engine(gguf("base-f32"), f32_cache=True)
    for prompt in prompts:
        _, with_lora = adapted.logits(prompt)
        _, merged_logits = merged.logits(prompt)
        _, base_logits = plain.logits(prompt)
        assert np.abs(with_lora - base_logits).max() > 1e-2, "the adapter should change the model"
        assert np.abs(with_lora - merged_logits).max() < F32_ATOL
        assert adapted.greedy(prompt) == merged.greedy(prompt)


def test_backend_reads_prompt_format_from_gguf(gguf, merged, prompts):
    from metaaligner_chain import MetaAlignerRunnable
    from metaaligner_chain.models.metadata import read_gguf_metadata

    path = gguf("merged-q8_0")
    recorded = json.loads((merged / "metaaligner.json").read_text())
    assert read_gguf_metadata(path) == {
        "prompt_format": "ultrafeedback",
        "objectives": recorded["objectives"],
        "base_model": recorded["base_model"],
    }
    aligner = MetaAlignerRunnable(model=str(path), objectives=["honesty", "helpfulness"], max_new_tokens=32)
    assert aligner.resolved_prompt_format() == "ultrafeedback"
    row = {"query": "What is the capital of France?", "response": "Paris."}
    result = aligner.invoke(row)
    assert set(row) <= set(result) and isinstance(result["response"], str)


def test_runnable_reads_prompt_format_from_the_lora_adapter(gguf):
    from metaaligner_chain import MetaAlignerRunnable
    from metaaligner_chain.models.metadata import read_gguf_metadata

    base, adapter = gguf("base-f32"), gguf("adapter-f32")
    assert "prompt_format" not in read_gguf_metadata(base)
    aligner = MetaAlignerRunnable(
        model=str(base), backend_options={"lora_path": str(adapter)},
        objectives=["honesty"], max_new_tokens=8,
    )
    assert aligner.resolved_prompt_format() == "ultrafeedback"
    info = aligner.invoke(AIMessage("Paris.")).response_metadata["metaaligner"]
    assert info["prompt_format"] == "ultrafeedback"
    # the tiny model writes until max_new_tokens: the gate turns that down, the rewrite kept aside
    assert info["aligned"] or info["rejected"]
