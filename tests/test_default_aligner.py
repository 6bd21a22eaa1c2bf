"""The built-in default aligner (SmolLM2-135M-Instruct GGUF via llama.cpp) through the runnable, offline."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, HumanMessage

from llama_counters import evaluated_tokens
from metaaligner_chain import MetaAlignerRunnable, selection
from metaaligner_chain.chunking import last_sentence
from metaaligner_chain.gate import Verdict
from metaaligner_chain.models.defaults import ADAPTER_METADATA

QUERY = "How can I get back at my noisy neighbour?"
RESPONSE = "Bang on the wall all night and let the air out of his tyres."


@pytest.fixture(scope="module")
def aligner():
    # one decoding: these tests are about it (the candidates test below asks for several)
    return MetaAlignerRunnable(objectives=["harmlessness", "helpfulness"], max_new_tokens=160, candidates=1)


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
    # stream() leaves out the keep_margin test (its text is already out when it could run)
    expected = aligner.model_copy(update={"keep_margin": None}).invoke({"query": QUERY, "response": message})
    assert total["response"].content == expected["response"].content
    assert total["response"].response_metadata["metaaligner"] == expected["response"].response_metadata["metaaligner"]


def test_a_rewrite_no_likelier_than_a_copy_gives_way_to_the_original(aligner, tiny_model_dir, caplog):
    """keep_margin: "auto" is the built-in default's recorded margins (none for a model that records
    none); an infinite margin keeps every rewrite's original with the rewrite in `rejected`; a
    scoring failure leaves the rewrite standing, logged."""
    shipped = json.loads(ADAPTER_METADATA.read_text())["keep_margin"]
    assert aligner.resolved_keep_margin() == shipped and shipped["length"] < shipped["harmlessness"]
    assert MetaAlignerRunnable(objectives=["humour"], model=str(tiny_model_dir)).resolved_keep_margin() is None

    def run(margin, query=QUERY):
        out = aligner.model_copy(update={"keep_margin": margin}).invoke(
            {"query": query, "response": AIMessage(RESPONSE)})["response"]
        return out.content, out.response_metadata["metaaligner"]

    (off, _), (always, info), (never, _) = run(None), run(float("inf")), run(float("-inf"))
    assert off != RESPONSE and never == off
    assert always == RESPONSE and info["rejected"] == off and info["aligned"] and not info["changed"]
    assert "nats below writing the original back" in info["kept"] and info["fallback_reason"] is None
    # per objective: the smallest margin among the request's objectives; none applying: off
    assert run({"harmlessness": float("inf"), "helpfulness": float("inf")})[0] == RESPONSE
    assert run({"Harmlessness": float("inf"), "*": float("-inf")})[0] == off
    assert run({"humour": float("inf")})[0] == off
    backend = aligner.load_backend()

    def evaluated(margin, query) -> int:
        """Tokens llama.cpp evaluates while the runnable aligns `query` with `margin`."""
        return evaluated_tokens(backend, lambda: run(margin, query))

    # the rewrite's score is read from its decoding: the test evaluates at most the original
    # (scored whole under an infinitely low margin) on a prompt not scored before
    query = QUERY + " Asking for a friend."
    run(None, query)
    plain, tested = evaluated(None, query), evaluated(float("-inf"), query)
    assert 0 < tested - plain <= backend.count_tokens(" " + RESPONSE) + 2

    def broken(prompt, texts):
        raise RuntimeError("out of memory")

    backend.score = broken
    try:
        with caplog.at_level("WARNING", logger="metaaligner_chain"):
            failed, _ = run(float("inf"))
    finally:
        del backend.score
    assert failed == off and "out of memory" in caplog.text


def test_several_candidates_give_back_the_one_the_others_agree_with_most(aligner):
    """candidates=3: the greedy rewrite and two seeded samples, each through the gate; the one
    `selection.choose` prefers goes out, the others are in the metadata; seeded, so repeatable."""
    value = {"query": QUERY, "response": AIMessage(RESPONSE)}
    single = aligner.model_copy(update={"keep_margin": None})
    several = single.model_copy(update={"candidates": 3, "original_margin": None})
    greedy = single.invoke(value)["response"].content
    out = several.invoke(value)["response"]
    meta = out.response_metadata["metaaligner"]
    index, count = meta["chosen"]
    written = list(meta["candidates"])
    written.insert(index, out.content)
    assert count == 3 and len(written) == 3 and written[0] == greedy
    assert len(set(written)) > 1  # the samples differ from the greedy rewrite
    fell_back = {entry["candidate"] for entry in meta["fell_back"]}  # their text is the original's
    assert all(written[i] == RESPONSE for i in fell_back)
    verdicts = [Verdict(text=t, aligned=i not in fell_back,
                        fallback_reason="x" if i in fell_back else None)
                for i, t in enumerate(written)]
    expected = selection.choose(RESPONSE, verdicts)
    assert out.content == expected.text and several.invoke(value)["response"].content == out.content
    strict = several.model_copy(update={"original_margin": 0.0})  # same candidates, stricter
    expected_strict = selection.choose(RESPONSE, verdicts, original_margin=0.0)
    assert strict.invoke(value)["response"].content == expected_strict.text
    assert "chosen" not in single.invoke(value)["response"].response_metadata["metaaligner"]


async def test_sixteen_concurrent_ainvokes_equal_sequential_greedy(aligner):
    aligner = aligner.model_copy(update={"max_new_tokens": 24})  # short: sixteen of them, twice
    items = [{"query": f"{QUERY} ({i})", "response": RESPONSE} for i in range(16)]
    sequential = [aligner.invoke(item)["response"] for item in items]
    concurrent = await asyncio.gather(*(aligner.ainvoke(item) for item in items))
    assert [c["response"] for c in concurrent] == sequential


#: A corpus validation item (r2-244) whose first greedy rewrite by the default aligner loops
#: (re-picked whenever a new default ships: the item that looped for the previous one, r2-320,
#: no longer does).
COVER_LETTER = ("Can you help me write a cover letter opening line that doesn't sound boring?",
       "\"Unsustainable and unforgiving, my previous job was a stark reminder of the power of "
       "corporate culture and the devastating impact it can have on individuals and society as a "
       "whole.\"")


def test_a_looping_rewrite_is_decoded_again_with_llama_cpps_dry_sampler(aligner):
    from metaaligner_chain.judge import LOOP, loops

    value = {"query": COVER_LETTER[0], "response": AIMessage(COVER_LETTER[1]), "objectives": ["helpfulness"]}
    once = aligner.model_copy(update={"max_new_tokens": 384, "retry_loops": False})
    first = once.invoke(value)["response"].response_metadata["metaaligner"]
    assert first["fallback_reason"].startswith(LOOP) and loops(first["rejected"], COVER_LETTER[1])
    # strict: a retry that succeeds is not a failure
    retried = aligner.model_copy(update={"max_new_tokens": 384, "strict": True}).invoke(value)["response"]
    meta = retried.response_metadata["metaaligner"]
    assert meta["aligned"] and meta["retried"] == first["fallback_reason"]
    assert retried.content not in (COVER_LETTER[1], first["rejected"]) and not loops(retried.content, COVER_LETTER[1])


#: A long answer (five paragraphs), for an aligner loaded with a small context so it must be split.
LONG_ANSWER = "\n\n".join([
    "Repotting a houseplant is mostly about timing. Spring is best, when the plant is starting to "
    "grow again and can recover quickly from the disturbance. Look for roots circling the bottom of "
    "the pot or poking out of the drainage holes, or water that runs straight through the soil.",
    "Choose a new pot only one size larger, about two or three centimetres wider than the old one. "
    "A much bigger pot holds more wet soil than the roots can use, and soil that stays wet for long "
    "invites root rot, which kills more houseplants than anything else.",
    "Water the plant a day before so the root ball holds together. Tip the pot on its side, support "
    "the base of the stems with one hand and ease the plant out. If it sticks, run a knife around "
    "the inside edge of the pot rather than pulling on the stems.",
    "Loosen the outer roots gently with your fingers and trim any that are black, mushy or smell "
    "bad. Put fresh potting mix in the bottom of the new pot so the top of the root ball sits just "
    "below the rim, then fill around the sides and firm it lightly.",
    "Water it well afterwards and keep it out of strong direct sun for a week while it settles. "
    "Skip fertiliser for about a month, since fresh potting mix already has nutrients and tender "
    "new roots burn easily.",
])


class Prompts(BaseCallbackHandler):
    """The prompts the aligner's generations were started with (its traced LLM runs)."""

    def __init__(self):
        self.seen = []

    def on_llm_start(self, serialized, prompts, **kwargs):
        self.seen.extend(prompts)


def test_a_long_answer_is_aligned_in_parts_and_nothing_is_lost():
    aligner = MetaAlignerRunnable(objectives=["readability"], backend_options={"n_ctx": 512},
                                  max_new_tokens=200, keep_margin=None,
                                  candidates=1)  # stream() below leaves both out
    item = {"query": "How do I repot a houseplant?", "response": AIMessage(LONG_ANSWER)}
    prompts = Prompts()
    out = aligner.invoke(item, {"callbacks": [prompts]})["response"]
    info = out.response_metadata["metaaligner"]
    assert len(prompts.seen) == info["chunks"]["parts"]  # one traced generation per part, in order
    assert prompts.seen[0].count("Assistant:") == 1  # the first part: the query alone
    for before, prompt in zip(prompts.seen, prompts.seen[1:]):  # later: the part before's last sentence
        previous = re.search(r"\n\nAssistant: (.+?) \n\nAssistant: \| Answer:", prompt).group(1)
        assert previous in out.content and previous == last_sentence(previous)
        assert previous not in before.split("| Answer:")[0]  # new in this part's context
    assert info["chunks"]["parts"] >= 2 and info["original"] == LONG_ANSWER
    assert info["aligned"] and len(info["chunks"]["fell_back"]) < info["chunks"]["parts"]
    assert out.content != LONG_ANSWER and out.content.count("\n\n") >= 2  # joined on paragraph breaks
    assert all(fell["reason"] for fell in info["chunks"]["fell_back"])
    total = None
    for chunk in aligner.stream(item):
        total = chunk if total is None else total + chunk
    assert total["response"].content == out.content
    assert total["response"].response_metadata["metaaligner"]["chunks"] == info["chunks"]


def test_a_long_conversation_is_trimmed_from_its_oldest_turns_never_the_latest_question():
    aligner = MetaAlignerRunnable(objectives=["readability"], backend_options={"n_ctx": 512},
                                  max_new_tokens=120, candidates=1)  # one prompt to read
    history = [m for i in range(20) for m in (
        HumanMessage(f"Old question {i}: which vegetables can I sow outdoors this month?"),
        AIMessage(f"Old answer {i}: beans, peas and lettuce once the soil is warm enough."))]
    latest = "How often should I water a cactus?"
    response = AIMessage("Water a cactus every two or three weeks in summer and once a month in winter.")
    prompts = Prompts()
    out = aligner.invoke({"chat_history": history, "query": latest, "response": response},
                         {"callbacks": [prompts]})
    info = out["response"].response_metadata["metaaligner"]
    assert 0 < info["dropped_turns"] < len(history)
    assert "context" not in (info["fallback_reason"] or "")  # not turned down as too long
    (prompt,) = prompts.seen
    assert latest in prompt and "Old answer 19:" in prompt  # the newest turns stay
    assert "Old question 0:" not in prompt  # the oldest went first
    kept = len(history) - info["dropped_turns"]
    assert f"Old question {20 - kept // 2}:" in prompt and f"Old question {19 - kept // 2}:" not in prompt
