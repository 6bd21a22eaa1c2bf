"""Drafted decoding and prefix snapshots in the llama.cpp backend: the tokens of plain greedy
decoding, on the real default GGUF (SmolLM2-135M-Instruct Q4_1), offline."""

from __future__ import annotations

import pytest

from metaaligner_chain.backends.base import GenerationSettings
from metaaligner_chain.backends.llamacpp import LlamaCppBackend
from metaaligner_chain.backends.llamacpp.drafting import response_span
from metaaligner_chain.models.defaults import default_gguf_path
from metaaligner_chain.prompt import build_prompt
from streams import drain

MODEL = str(default_gguf_path())


def _case(question: str, response: str, objectives: list[str]) -> tuple[str, str]:
    query = f"\n\nHuman: {question} \n\nAssistant:"
    return build_prompt(query, response, objectives), response


# SmolLM2 copies the response in the first two ("The answer is: <response>") and not in the rest.
COPIES = [
    _case(
        "How often should I water my houseplants?",
        "Most houseplants like to be watered when the top few centimetres of soil feel dry, which "
        "is usually once a week. Water less in winter, and make sure the pot drains so the roots "
        "never sit in water.",
        ["harmlessness"],
    ),
    _case(
        "What is the capital of Australia?",
        "The capital of Australia is Sydney, which is also its largest city and home to the "
        "famous Opera House and Harbour Bridge.",
        ["humour"],
    ),
]
NO_COPY = [
    _case("How do I bake bread?", "Mix flour and water.", ["harmlessness", "helpfulness"]),
    _case(
        "How do I change a flat tyre?",
        "Park on flat ground, loosen the wheel nuts, jack up the car and put on the spare.",
        ["harmlessness", "helpfulness"],
    ),
]
PLAIN = GenerationSettings(max_new_tokens=64, drafting=False)
DRAFTED = GenerationSettings(max_new_tokens=64, drafting=True)


@pytest.fixture(scope="module")
def backend() -> LlamaCppBackend:
    backend = LlamaCppBackend(MODEL)
    yield backend
    backend.close()


@pytest.mark.parametrize("prompt,response", COPIES + NO_COPY)
def test_drafted_generate_gives_the_plain_greedy_tokens(backend, prompt, response):
    plain = backend.generate([prompt], PLAIN, [response])[0]
    drafted = backend.generate([prompt], DRAFTED, [response])[0]
    assert drafted.text == plain.text
    assert drafted.completion_tokens == plain.completion_tokens
    assert drafted.finish_reason == plain.finish_reason
    assert plain.stats is None
    assert drafted.stats["accepted_tokens"] <= drafted.stats["drafted_tokens"]


def test_copying_rewrites_accept_most_drafts_and_need_fewer_forwards(backend):
    for prompt, response in COPIES:
        drafted = backend.generate([prompt], DRAFTED, [response])[0]
        assert drafted.finish_reason == "stop"  # EOS reached inside drafted decoding
        assert drafted.stats["accepted_tokens"] >= 10
        assert drafted.stats["acceptance"] > 0.5
        assert drafted.stats["forward_passes"] < drafted.completion_tokens
    # Not copying the response, the base model repeats the prompt's instruction: the prompt
    # lookup fallback drafts that (the tokens stay those of plain decoding, tested above).
    prompt, response = NO_COPY[1]
    drafted = backend.generate([prompt], DRAFTED, [response])[0]
    assert response not in drafted.text
    assert drafted.stats["forward_passes"] < drafted.completion_tokens


@pytest.mark.parametrize("max_new_tokens", [1, 2, 7, 12, 19])
def test_drafted_decoding_stops_at_max_new_tokens_like_plain(backend, max_new_tokens):
    prompt, response = COPIES[0]
    plain = backend.generate([prompt], GenerationSettings(max_new_tokens, drafting=False))[0]
    drafted = backend.generate([prompt], GenerationSettings(max_new_tokens), [response])[0]
    assert (drafted.text, drafted.completion_tokens) == (plain.text, plain.completion_tokens)
    assert drafted.finish_reason == plain.finish_reason == "length"
    assert drafted.completion_tokens == max_new_tokens


@pytest.mark.parametrize("prompt,response", [COPIES[0], NO_COPY[0]])
def test_drafted_stream_joins_to_plain_text_and_returns_the_generation(backend, prompt, response):
    plain = backend.generate([prompt], PLAIN)[0]
    pieces, generation = drain(backend.stream(prompt, DRAFTED, response))
    assert len(pieces) > 1
    assert "".join(pieces) == generation.text == plain.text
    assert generation.completion_tokens == plain.completion_tokens
    assert generation.stats["drafted_tokens"] >= generation.stats["accepted_tokens"]


def test_drafting_off_or_sampling_decodes_plainly(backend):
    prompt, response = COPIES[0]
    off = backend.generate([prompt], PLAIN, [response])[0]
    assert off.stats is None
    assert off.text == backend.generate([prompt], PLAIN)[0].text
    sampled = GenerationSettings(max_new_tokens=16, temperature=0.7, seed=3)
    first = backend.generate([prompt], sampled, [response])[0]
    assert first.stats is None  # drafting verifies greedy choices only
    assert first.text == backend.generate([prompt], sampled)[0].text


def test_mismatched_responses_are_rejected(backend):
    with pytest.raises(ValueError, match="`responses` has 1 items but `prompts` has 2"):
        backend.generate([COPIES[0][0], COPIES[1][0]], DRAFTED, ["one"])


def test_response_span_is_the_responses_prompt_tokens(backend):
    prompt, response = COPIES[0]
    with backend.locked_llama() as llama:
        tokens = llama.tokenize(prompt.encode(), add_bos=True, special=True)
        span = response_span(llama, prompt, tokens, response)
        text = llama.detokenize(span).decode()
        assert text.strip() == response
        start = next(i for i in range(len(tokens)) if tokens[i : i + len(span)] == span)
        assert start > 0  # a contiguous run of the prompt's own tokens
        assert response_span(llama, prompt, tokens, "not in the prompt") == []


def test_prefix_snapshots_give_the_same_outputs_as_recomputing(backend):
    """Alternating objective sets: the snapshot path (restores) equals a cache-less backend."""
    preamble = "Faithfulness: keep the answer's own words and fix only clear errors, " * 6
    sets = [["harmlessness", "helpfulness"], [f"Care: {preamble}"]]
    questions = ["Why is the sky blue?", "How do I boil an egg?", "How do I save money?"]
    response = "I am not sure."
    calls = [
        (build_prompt(f"\n\nHuman: {q} \n\nAssistant:", response, objectives), response)
        for q in questions
        for objectives in sets
    ]
    settings = GenerationSettings(max_new_tokens=12)
    cold = LlamaCppBackend(MODEL, prefix_cache=0)
    try:
        expected = [cold.generate([p], settings)[0].text for p, _ in calls]
    finally:
        cold.close()
    warm = LlamaCppBackend(MODEL)  # its own cache, so the restores counted are these calls'
    try:
        got = [warm.generate([p], settings)[0].text for p, _ in calls]
        assert warm.snapshot_restores == len(calls) - 2  # all but the first of each set
        got += [warm.generate([p], settings, [r])[0].text for p, r in calls]
    finally:
        warm.close()
    assert got == expected + expected


def test_a_full_snapshot_cache_never_evicts_the_snapshot_it_is_about_to_load():
    """Three preambles cycling through two snapshots: the one to restore is the oldest, and the
    live cache saved first must evict another one (it once raised KeyError, and the gate kept
    the original)."""
    preamble = "Faithfulness: keep the answer's own words and fix only clear errors, " * 6
    sets = [[f"Care: {preamble}"], [f"Warmth: {preamble}"], [f"Brevity: {preamble}"]]
    response = "I am not sure."
    prompts = [build_prompt(f"\n\nHuman: Question {i}? \n\nAssistant:", response, objectives)
               for i in range(2) for objectives in sets]
    settings = GenerationSettings(max_new_tokens=4)
    cold = LlamaCppBackend(MODEL, prefix_cache=0)
    try:
        expected = [cold.generate([p], settings)[0].text for p in prompts]
    finally:
        cold.close()
    small = LlamaCppBackend(MODEL, prefix_cache=2)
    try:
        assert [small.generate([p], settings)[0].text for p in prompts] == expected
        # A again restores A (the oldest, kept while C is saved); B was evicted by then; C restores
        assert small.snapshot_restores == 2
    finally:
        small.close()
