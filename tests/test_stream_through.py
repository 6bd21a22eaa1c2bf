"""Stream-through: a response still streaming in from a policy is aligned one completed paragraph
at a time by the built-in default aligner (SmolLM2-135M + LoRA, llama.cpp), offline.

The policy is a real LangChain `RunnableGenerator` that writes a fixed answer a word at a time and
counts how much of it has been read: "the first aligned chunk came before the policy finished" is
checked by that count (cause and effect), never by a clock.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from operator import itemgetter

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langchain_core.runnables import RunnableGenerator, RunnableParallel

from metaaligner_chain import MetaAlignerRunnable
from metaaligner_chain.chunking import last_sentence

QUERY = "How do I look after a sourdough starter?"
PARAGRAPHS = [
    "Keep the starter in a clean glass jar with a loose lid, at room temperature, and feed it once "
    "a day. Each feeding, throw away about half of it and stir in equal weights of flour and water.",
    "After a week or so it should double in size within a few hours of a feeding and smell pleasantly "
    "sour. Bubbles all through the jar are a good sign; a layer of grey liquid on top means it is hungry.",
    "If you bake only now and then, keep it in the fridge and feed it once a week. Take it out the day "
    "before you bake and give it two feedings so it is lively again.",
]
ANSWER = "\n\n".join(PARAGRAPHS)


class Policy:
    """A streaming policy writing `ANSWER` a word at a time (str or `AIMessageChunk` pieces), as a
    real LangChain `RunnableGenerator`; `read` counts the pieces taken from it so far."""

    def __init__(self, message: bool = False):
        self.pieces = re.findall(r"\S+\s*", ANSWER)
        assert "".join(self.pieces) == ANSWER
        self.message, self.read = message, 0

    def _piece(self, text: str):
        self.read += 1
        return AIMessageChunk(content=text, id="policy-1") if self.message else text

    def sync(self) -> RunnableGenerator:
        def write(inputs: Iterator) -> Iterator:
            for _ in inputs:
                pass
            for text in self.pieces:
                yield self._piece(text)

        return RunnableGenerator(write)

    def asynchronous(self) -> RunnableGenerator:
        async def write(inputs: AsyncIterator) -> AsyncIterator:
            async for _ in inputs:
                pass
            for text in self.pieces:
                yield self._piece(text)

        return RunnableGenerator(write)

    @property
    def finished(self) -> bool:
        return self.read == len(self.pieces)


class Verdicts(BaseCallbackHandler):
    """Collects the `metaaligner_verdict` events a run reports."""

    def __init__(self):
        self.seen = []

    def on_custom_event(self, name, data, **kwargs):
        self.seen.append(data)


@pytest.fixture(scope="module")
def aligner():
    # streams leave out the keep_margin test and the choice among candidates (their text is out
    # before either could run), so the invoke() these tests compare with leaves them out too
    return MetaAlignerRunnable(objectives=["readability"], max_new_tokens=160, keep_margin=None,
                               candidates=1)


def _expected(aligner, query=None):
    """Each paragraph streamed in turn (as stream-through streams it), with the query (when given)
    and the last sentence of the paragraph before as an assistant turn in its context, joined
    back. A paragraph whose rewrite the gate turns down only once it has streamed keeps its
    streamed text (the verdict's text then), and so does the next paragraph's context."""
    out, previous = [], []
    for paragraph in PARAGRAPHS:
        context = ([HumanMessage(query)] if query else []) + previous
        chunks = [c["response"] for c in aligner.stream({"query": context, "response": AIMessage(paragraph)})
                  if "response" in c]
        total = chunks[0]
        for chunk in chunks[1:]:
            total += chunk
        out.append(total.content.strip())
        previous = [AIMessage(last_sentence(total.content))]
    return "\n\n".join(out)


def test_the_first_aligned_tokens_go_out_before_the_policy_has_finished(aligner):
    policy = Policy(message=True)
    read_at_first, total = None, None
    for chunk in (policy.sync() | aligner).stream("How do I look after a sourdough starter?"):
        if read_at_first is None and chunk.content:
            read_at_first = policy.read
        total = chunk if total is None else total + chunk
    assert policy.finished and read_at_first is not None
    assert read_at_first < len(policy.pieces)  # aligned text went out while the policy was writing
    info = total.response_metadata["metaaligner"]
    assert info["original"] == ANSWER and info["chunks"]["streamed_through"] is True
    assert info["chunks"]["parts"] == len(PARAGRAPHS)  # one completed paragraph each
    assert total.content == _expected(aligner)  # each paragraph's rewrite, on the original's breaks
    assert total.id == "policy-1" and isinstance(total, AIMessageChunk)


def test_parts_the_gate_turns_down_keep_their_original_text(aligner):
    """Eight new tokens cut every rewrite at the token limit: each paragraph keeps its text."""
    short = aligner.model_copy(update={"max_new_tokens": 8})
    policy = Policy()
    out = list((policy.sync() | short).stream("anything"))
    assert "".join(out) == ANSWER
    verdicts = Verdicts()
    list((Policy().sync() | short).stream("anything", {"callbacks": [verdicts]}))
    (info,) = verdicts.seen  # a str stream reports its verdict to callbacks
    assert info["aligned"] is False and info["original"] == ANSWER
    assert info["chunks"]["parts"] == len(PARAGRAPHS)
    assert [f["part"] for f in info["chunks"]["fell_back"]] == list(range(len(PARAGRAPHS)))
    assert all("token limit" in f["reason"] for f in info["chunks"]["fell_back"])


async def test_astream_with_the_query_streams_through_too(aligner):
    policy = Policy()
    chain = RunnableParallel(query=itemgetter("question"), response=itemgetter("question") | policy.asynchronous())
    read_at_first, total = None, {}
    async for chunk in (chain | aligner).astream({"question": QUERY}):
        if read_at_first is None and chunk.get("response"):
            read_at_first = policy.read
        for key, value in chunk.items():
            total[key] = total[key] + value if key in total else value
    assert read_at_first is not None and read_at_first < len(policy.pieces)
    assert total["query"] == QUERY and total["original_response"] == ANSWER
    assert total["response"] == _expected(aligner, QUERY)  # each part aligned with the query


def test_without_stream_through_the_whole_answer_is_aligned_once(aligner):
    policy = Policy(message=True)
    whole = aligner.model_copy(update={"stream_through": False})
    read_at_first, total = None, None
    for chunk in (policy.sync() | whole).stream("anything"):
        if read_at_first is None and chunk.content:
            read_at_first = policy.read
        total = chunk if total is None else total + chunk
    assert read_at_first == len(policy.pieces)  # nothing went out before the policy finished
    assert "chunks" not in total.response_metadata["metaaligner"]
    assert total.content == whole.invoke(AIMessage(ANSWER)).content


def test_a_whole_input_passed_to_stream_is_aligned_whole(aligner):
    streamed = "".join(aligner.stream(ANSWER))
    assert streamed == aligner.invoke(ANSWER)


def test_a_stream_through_left_half_read_never_blocks_other_callers(aligner):
    kept = (Policy().sync() | aligner).stream("anything")
    next(kept)  # the first aligned piece; the iterator is kept, neither read nor closed
    with ThreadPoolExecutor(1) as pool:  # the guard against a hang, not a timing check
        done = pool.submit(aligner.invoke, PARAGRAPHS[0]).result(timeout=300)
    assert isinstance(done, str) and done
    kept.close()


def test_a_wrapped_chain_streams_through_with_its_input_as_context(aligner):
    policy = Policy()
    read_at_first, pieces = None, []
    for piece in aligner.wrap(policy.sync()).stream(QUERY):
        if read_at_first is None and piece:
            read_at_first = policy.read
        pieces.append(piece)
    assert read_at_first is not None and read_at_first < len(policy.pieces)  # before the chain ended
    piped = {"query": lambda q: q, "response": Policy().sync()} | aligner  # the same stream, piped
    assert "".join(pieces) == "".join(c.get("response", "") for c in piped.stream(QUERY))
