"""The llama.cpp prefix cache never fails a call (issue 16, item 6). It once raised KeyError on the
7th of ten distinct calls (it evicted the snapshot it was about to load) and the gate quietly kept
the original. Here the real default aligner is driven through eviction, more objective preambles
than the cache holds, alternating, one after another, from threads and from asyncio tasks: every
call is aligned and gives the tokens of a backend with neither snapshots nor drafting."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from langchain_core.messages import AIMessage

from metaaligner_chain import MetaAlignerRunnable
from metaaligner_chain.backends.base import GenerationSettings
from metaaligner_chain.backends.llamacpp import LlamaCppBackend
from metaaligner_chain.models.defaults import default_aligner_gguf
from metaaligner_chain.prompt import build_prompt

MODEL = str(default_aligner_gguf())
#: Six objective preambles, each long enough for a snapshot (`prefix.MIN_PREFIX` tokens), cycled:
#: twice as many as the cache below keeps.
SETS = [["harmlessness", "helpfulness"], ["helpfulness", "humour"], ["humour", "harmlessness"],
        ["harmlessness", "helpfulness", "humour"],
        ["Politeness: the response should be courteous, respectful and kind to the user, and "
         "never mock them or their question"],
        ["helpfulness", "harmlessness"]]
CACHE_SIZE = 3
#: (question, answer, objective set): distinct prompts cycling twice through the six preambles,
#: each rewritten by the default aligner within `MAX_NEW_TOKENS` and ending at EOS (most are
#: kept as they are: an aligned answer too, the gate lets it through).
ITEMS = [
    ("How do I boil an egg?", "Put it in water and boil it, obviously.", 0),
    ("What is the capital of France?", "Paris, you idiot.", 1),
    ("What is the capital of Italy?", "Rome, obviously.", 2),
    ("What colour is the sky?", "Blue, of course.", 3),
    ("What is the capital of France?", "Paris, you idiot.", 4),
    ("Which animal says moo?", "A cow, of course.", 5),
    ("How many hours are in a day?", "Twenty-four, duh.", 0),
    ("What do bees make?", "Honey, duh.", 1),
    ("How many days are in a week?", "Seven, obviously.", 2),
    ("What is frozen water called?", "Ice, obviously.", 3),
    ("How many legs does a spider have?", "Eight, everyone knows that.", 4),
    ("What is the capital of Italy?", "Rome, obviously.", 5),
]
MAX_NEW_TOKENS = 64


def _inputs() -> list[dict]:
    return [{"query": q, "response": AIMessage(a), "objectives": SETS[s]} for q, a, s in ITEMS]


def _aligner(**fields) -> MetaAlignerRunnable:
    return MetaAlignerRunnable(objectives=["harmlessness"], model=MODEL, prompt_format="hh-rlhf",
                               max_new_tokens=MAX_NEW_TOKENS, **fields)


def _aligned(results: list[dict]) -> list[str]:
    """The aligned texts; every one must be aligned (no fallback, no KeyError kept quiet)."""
    info = [r["response"].response_metadata["metaaligner"] for r in results]
    assert [i["fallback_reason"] for i in info] == [None] * len(info)
    assert all(i["aligned"] for i in info)
    return [r["response"].content for r in results]


@pytest.fixture(scope="module")
def expected() -> list[str]:
    """Each input through a backend without snapshots and without drafting."""
    plain = _aligner(drafting=False, backend_options={"prefix_cache": 0})
    return _aligned([plain.invoke(x) for x in _inputs()])


@pytest.fixture(scope="module")
def cached():
    """An aligner whose backend (its own: no other test shares these options) keeps
    `CACHE_SIZE` snapshots, with drafting on."""
    aligner = _aligner(backend_options={"prefix_cache": CACHE_SIZE, "n_ctx": 2048})
    yield aligner
    aligner.load_backend().close()


def test_one_after_another(cached, expected):
    assert _aligned([cached.invoke(x) for x in _inputs()]) == expected
    assert cached.load_backend().snapshot_restores > 0  # snapshots were saved, evicted and loaded


def test_from_threads(cached, expected):
    inputs, order = _inputs(), list(range(len(ITEMS)))[::-1]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: cached.invoke(inputs[i]), order))
    assert _aligned(results) == [expected[i] for i in order]


async def test_from_asyncio_tasks(cached, expected):
    inputs, order = _inputs(), [*range(1, len(ITEMS), 2), *range(0, len(ITEMS), 2)]
    results = await asyncio.gather(*(cached.ainvoke(inputs[i]) for i in order))
    assert _aligned(list(results)) == [expected[i] for i in order]


_PREAMBLE = "Faithfulness: keep the answer's own words and fix only clear errors, " * 6
_A, _B, _C = [f"Care: {_PREAMBLE}"], [f"Warmth: {_PREAMBLE}"], [f"Brevity: {_PREAMBLE}"]
#: A, B, A: the snapshot to load is the only (or the oldest) one when the live cache is saved.
SMALL_PROMPTS = [
    build_prompt(f"\n\nHuman: Question {i}? \n\nAssistant:", "I am not sure.", objectives)
    for i, objectives in enumerate([_A, _B, _A, _C, _A, _B, _C, _B])
]
SMALL = GenerationSettings(max_new_tokens=4)


@pytest.fixture(scope="module")
def small_expected() -> list[str]:
    cold = LlamaCppBackend(MODEL, prefix_cache=0)
    try:
        return [cold.generate([p], SMALL)[0].text for p in SMALL_PROMPTS]
    finally:
        cold.close()


@pytest.mark.parametrize(
    "size",
    [
        1,  # A, B, A with one slot: the live cache saved first once evicted the snapshot to load
        2,
    ],
)
def test_a_cache_of_one_or_two_snapshots_never_fails_a_call(size, small_expected):
    small = LlamaCppBackend(MODEL, prefix_cache=size)
    try:
        assert [small.generate([p], SMALL)[0].text for p in SMALL_PROMPTS] == small_expected
        assert small.snapshot_restores > 0
    finally:
        small.close()
