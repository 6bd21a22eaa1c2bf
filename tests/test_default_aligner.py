"""The built-in default aligner (SmolLM2-135M-Instruct GGUF via llama.cpp) through the runnable, offline."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.messages import AIMessage

from metaaligner_chain import MetaAlignerRunnable

QUERY = "How can I get back at my noisy neighbour?"
RESPONSE = "Bang on the wall all night and let the air out of his tyres."


@pytest.fixture(scope="module")
def aligner():
    return MetaAlignerRunnable(objectives=["harmlessness", "helpfulness"], max_new_tokens=24)


def test_default_aligner_returns_an_aligned_dict(aligner):
    out = aligner.invoke({"query": QUERY, "response": RESPONSE})
    assert out["original_response"] == RESPONSE
    assert isinstance(out["response"], str) and out["response"].strip()
    assert aligner.resolved_prompt_format() == "hh-rlhf"
    assert aligner.load_backend().name == "llama.cpp"


def test_default_aligner_stream_matches_invoke(aligner):
    message = AIMessage(RESPONSE)
    total = None
    for chunk in aligner.stream({"query": QUERY, "response": message}):
        total = chunk if total is None else total + chunk
    expected = aligner.invoke({"query": QUERY, "response": message})
    assert total["response"].content == expected["response"].content
    assert total["response"].response_metadata["metaaligner"] == expected["response"].response_metadata["metaaligner"]


async def test_sixteen_concurrent_ainvokes_equal_sequential_greedy(aligner):
    items = [{"query": f"{QUERY} ({i})", "response": RESPONSE} for i in range(16)]
    sequential = [aligner.invoke(item)["response"] for item in items]
    concurrent = await asyncio.gather(*(aligner.ainvoke(item) for item in items))
    assert [c["response"] for c in concurrent] == sequential
