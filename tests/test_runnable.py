"""MetaAlignerRunnable on a tiny llama model built in-process: typing, batching, streaming, async."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import ConfigurableField

from metaaligner_chain import AlignerError, MetaAlignerRunnable
from metaaligner_chain.backends import get_backend
from metaaligner_chain.coerce import coerce
from metaaligner_chain.models.metadata import write_metadata

RESPONSES = ["Mix flour, water and yeast.", "Paris is the capital of France.", "Sleep eight hours."]


@pytest.fixture(scope="module")
def aligner(tiny_model_dir):
    return MetaAlignerRunnable(
        objectives=["harmlessness", "helpfulness"], model=str(tiny_model_dir),
        prompt_format="hh-rlhf", max_new_tokens=12,
    )


def _backend(aligner):
    return aligner.load_backend()


def test_str_in_str_out(aligner):
    out = aligner.invoke(RESPONSES[0])
    assert isinstance(out, str) and out and out == aligner.invoke(RESPONSES[0])


@pytest.mark.parametrize("message", [AIMessage("Sleep eight hours.", id="m1"), HumanMessage("Sleep eight hours.")])
def test_message_in_same_type_out_with_metadata(aligner, message):
    out = aligner.invoke(message)
    assert type(out) is type(message) and out.content == aligner.invoke("Sleep eight hours.")
    info = out.response_metadata["metaaligner"]
    assert info["original"] == "Sleep eight hours."
    assert info["objectives"] == ["harmlessness", "helpfulness"]
    assert info["prompt_format"] == "hh-rlhf"
    assert info["changed"] is (out.content != "Sleep eight hours.")
    assert out.id == message.id


def test_content_block_message(aligner):
    message = AIMessage(content=[{"type": "text", "text": "Sleep eight "}, {"type": "text", "text": "hours."}])
    assert aligner.invoke(message).content == aligner.invoke("Sleep eight hours.")


@pytest.mark.parametrize(("query_key", "response_key"), [("query", "response"), ("question", "answer"), ("input", "output")])
def test_dict_in_same_dict_out(aligner, query_key, response_key):
    value = {query_key: "How do I bake bread?", response_key: RESPONSES[0], "extra": 1}
    out = aligner.invoke(value)
    assert out["extra"] == 1 and out[query_key] == "How do I bake bread?"
    assert out["original_response"] == RESPONSES[0]
    assert isinstance(out[response_key], str) and out[response_key]
    assert value[response_key] == RESPONSES[0]  # the input is not modified


def test_dict_with_message_response_and_context_changes_the_prompt(aligner):
    with_context = aligner.invoke({"query": "How do I bake bread?", "response": AIMessage(RESPONSES[0])})
    assert isinstance(with_context["response"], AIMessage)
    assert isinstance(with_context["original_response"], AIMessage)
    assert with_context["response"].response_metadata["metaaligner"]["original"] == RESPONSES[0]


def test_context_forms_agree(aligner):
    """A str query, a human message and a chat history reach the same hh-rlhf transcript."""
    as_text = aligner.invoke({"query": "How do I bake bread?", "response": RESPONSES[0]})["response"]
    as_message = aligner.invoke({"query": HumanMessage("How do I bake bread?"), "response": RESPONSES[0]})["response"]
    as_transcript = aligner.invoke(
        {"query": "\n\nHuman: How do I bake bread? \n\nAssistant:", "response": RESPONSES[0]}
    )["response"]
    assert as_text == as_message == as_transcript
    history = aligner.invoke({"chat_history": [HumanMessage("Hi"), AIMessage("Hello")],
                              "query": "How do I bake bread?", "response": RESPONSES[0]})
    assert history["original_response"] == RESPONSES[0]


def test_bad_inputs_name_the_fix(aligner):
    with pytest.raises(TypeError, match="pass a str, a LangChain message, or a dict"):
        aligner.invoke(42)
    with pytest.raises(ValueError, match="put the response to align under one of response, answer, output"):
        aligner.invoke({"query": "q"})
    with pytest.raises(TypeError, match="`response` is a int"):
        aligner.invoke({"query": "q", "response": 3})
    with pytest.raises(ValueError, match="unknown key 'kindness'"):
        aligner.invoke({"query": "q", "response": "r", "objectives": ["kindness"]})
    with pytest.raises(ValueError, match=r"`objectives` is \[\]; name at least one objective"):
        aligner.invoke({"query": "q", "response": "r", "objectives": []})
    with pytest.raises(TypeError, match="`objectives` is 42; give a list"):
        aligner.invoke({"query": "q", "response": "r", "objectives": 42})
    with pytest.raises(TypeError, match="`chat_history` is None; give the earlier turns as a list"):
        aligner.invoke({"query": "q", "response": "r", "chat_history": None})


@pytest.mark.parametrize("empty", ["", "  \n\t "])
def test_an_empty_response_comes_back_as_it_is_without_a_model_call(aligner, empty, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("the model was called for an empty response")

    monkeypatch.setattr(type(aligner), "load_backend", no_model)
    assert aligner.invoke(empty) == empty
    out = aligner.invoke({"query": "q", "response": AIMessage(empty)})["response"]
    assert out.content == empty
    assert out.response_metadata["metaaligner"]["fallback_reason"] == "the response is empty; nothing to align"
    total = None
    for chunk in aligner.stream({"query": "q", "response": AIMessage(empty)}):
        total = chunk if total is None else total + chunk
    assert total["response"].content == empty
    assert total["response"].response_metadata["metaaligner"] == out.response_metadata["metaaligner"]


def test_batch_equals_one_by_one(aligner):
    inputs = [*RESPONSES, {"query": "Capital?", "response": RESPONSES[1]}, AIMessage(RESPONSES[2])]
    assert aligner.batch(inputs) == [aligner.invoke(x) for x in inputs]


def test_batch_keeps_good_items_when_one_is_bad(aligner):
    out = aligner.batch([RESPONSES[0], 42], return_exceptions=True)
    assert out[0] == aligner.invoke(RESPONSES[0]) and isinstance(out[1], TypeError)


@pytest.mark.parametrize("value", [RESPONSES[0], AIMessage(RESPONSES[0]), {"query": "Bake?", "response": RESPONSES[0]}])
def test_stream_joins_to_invoke(aligner, value):
    # long enough to stream past the start the gate holds back (gate.ECHO_WINDOW characters);
    # no retry of a turned-down rewrite, which a stream cannot take back
    aligner = aligner.model_copy(update={"max_new_tokens": 48, "retry_loops": False})
    chunks = list(aligner.stream(value))
    assert len(chunks) > 1
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    expected, verdict = invoked(aligner, value)
    if verdict.get("rejected") is not None:
        # turned down on the whole rewrite (cut at the token limit, a loop): a stream has sent it
        # by then, and its verdict says so; invoke returns the original
        text = total.content if isinstance(value, AIMessage) else total if isinstance(value, str) else total["response"]
        assert text == verdict["rejected"]
        if isinstance(value, AIMessage):
            streamed = total.response_metadata["metaaligner"]
            assert streamed["fallback_reason"] == verdict["fallback_reason"] + " (after it was streamed)"
            assert not streamed["aligned"] and streamed["original"] == RESPONSES[0]
        return
    if isinstance(value, AIMessage):
        assert all(isinstance(c, AIMessageChunk) for c in chunks)
        assert total.content == expected.content
        assert total.response_metadata["metaaligner"] == expected.response_metadata["metaaligner"]
    else:
        assert total == expected


class Verdicts(BaseCallbackHandler):
    """Collects the `metaaligner_verdict` events of the runs it is passed to."""

    def __init__(self):
        self.seen = []

    def on_custom_event(self, name, data, **kwargs):
        self.seen.append((name, data))


def invoked(aligner, value):
    """(invoke's output, the verdict it reported) for `value`."""
    verdicts = Verdicts()
    out = aligner.invoke(value, {"callbacks": [verdicts]})
    return out, verdicts.seen[-1][1]


async def test_async_paths_match_sync(aligner):
    value = {"query": "Bake?", "response": RESPONSES[0]}
    assert await aligner.ainvoke(value) == aligner.invoke(value)
    assert await aligner.abatch(RESPONSES) == aligner.batch(RESPONSES)
    chunks = [c async for c in aligner.astream(RESPONSES[1])]
    assert "".join(chunks) == aligner.invoke(RESPONSES[1])


def test_fake_chat_model_policy_piped_into_the_aligner(aligner):
    policy = GenericFakeChatModel(messages=iter([RESPONSES[0], RESPONSES[0]]))
    chain = policy | aligner
    out = chain.invoke("How do I bake bread?")
    assert isinstance(out, AIMessage) and out.content == aligner.invoke(RESPONSES[0])
    chunks = list(chain.stream("How do I bake bread?"))  # the policy streams AIMessageChunks
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert "".join(c.content for c in chunks) == out.content


def test_wrap_passes_the_chain_input_as_context(aligner):
    prompt = ChatPromptTemplate.from_messages([("human", "{question}")])
    policy = GenericFakeChatModel(messages=iter([RESPONSES[0]] * 4))
    wrapped = aligner.wrap(prompt | policy)
    out = wrapped.invoke({"question": "How do I bake bread?"})
    expected = aligner.invoke({"query": "How do I bake bread?", "response": AIMessage(RESPONSES[0])})["response"]
    assert isinstance(out, AIMessage) and out.content == expected.content
    assert out.response_metadata["metaaligner"]["original"] == RESPONSES[0]
    assert [o.content for o in wrapped.batch([{"question": "How do I bake bread?"}] * 2)] == [expected.content] * 2
    assert "".join(c.content for c in wrapped.stream({"question": "How do I bake bread?"})) == expected.content


def test_configurable_objectives_share_one_model(aligner):
    configurable = aligner.configurable_fields(
        objectives=ConfigurableField(id="objectives"), max_new_tokens=ConfigurableField(id="max_new_tokens")
    )
    humour = configurable.with_config(configurable={"objectives": ["humour"], "max_new_tokens": 5})
    out = humour.invoke(AIMessage(RESPONSES[0]))
    assert out.response_metadata["metaaligner"]["objectives"] == ["humour"]
    direct = MetaAlignerRunnable(objectives=["humour"], model=aligner.model, prompt_format="hh-rlhf", max_new_tokens=5)
    assert out.content == direct.invoke(RESPONSES[0])
    assert direct.load_backend() is aligner.load_backend()


def test_runs_are_traced_under_a_clear_name(aligner):
    class Recorder(BaseCallbackHandler):
        def __init__(self):
            self.names = []

        def on_chain_start(self, serialized, inputs, **kwargs):
            self.names.append(kwargs.get("name"))

    recorder = Recorder()
    aligner.invoke(RESPONSES[0], {"callbacks": [recorder]})
    aligner.batch(RESPONSES[:2], {"callbacks": [recorder]})
    list(aligner.stream(RESPONSES[0], {"callbacks": [recorder]}))
    assert recorder.names == ["MetaAligner"] * 4


def test_failure_inside_the_aligner_keeps_the_original(aligner, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("the engine broke")

    backend = aligner.load_backend()
    monkeypatch.setattr(backend, "generate", broken)
    monkeypatch.setattr(backend, "stream", broken)
    out = aligner.invoke(AIMessage("Keep me."))
    assert out.content == "Keep me."
    info = out.response_metadata["metaaligner"]
    assert info["aligned"] is False and info["changed"] is False
    assert info["fallback_reason"] == "aligner failed: RuntimeError: the engine broke"
    assert "kept the original response" in caplog.text
    assert list(aligner.stream("Keep me.")) == ["Keep me."]
    with pytest.raises(AlignerError, match="aligner failed: RuntimeError: the engine broke"):
        aligner.model_copy(update={"strict": True}).invoke("Keep me.")


def test_a_rewrite_cut_at_the_token_limit_is_decoded_once_more_with_a_repetition_guard(aligner, caplog):
    class ModelRuns(BaseCallbackHandler):
        def __init__(self):
            self.prompts = []

        def on_llm_start(self, serialized, prompts, **kwargs):
            self.prompts.extend(prompts)

    runs = ModelRuns()
    out = aligner.invoke(AIMessage(RESPONSES[0]), {"callbacks": [runs]})  # the tiny model loops
    info = out.response_metadata["metaaligner"]
    assert info["retried"].startswith("the rewrite was cut at the token limit")
    assert out.content == RESPONSES[0] and not info["aligned"]  # 12 tokens: the retry is cut too
    assert len(runs.prompts) == 2 and runs.prompts[0] == runs.prompts[1]  # both traced
    assert caplog.text.count("kept the original response") == 1  # the final verdict only
    once = aligner.model_copy(update={"retry_loops": False}).invoke(AIMessage(RESPONSES[0]))
    assert "retried" not in once.response_metadata["metaaligner"]
    assert once.response_metadata["metaaligner"]["rejected"] != info["rejected"]  # guarded differs


def test_prompt_longer_than_the_context_keeps_the_original(aligner):
    item = {"query": "word " * 2000, "response": AIMessage(RESPONSES[0])}  # the tiny model's context is 1024 tokens
    out = aligner.invoke(item)["response"]
    assert out.content == RESPONSES[0]
    assert "context" in out.response_metadata["metaaligner"]["fallback_reason"]
    with pytest.raises(AlignerError, match="Shorten the context"):
        aligner.model_copy(update={"strict": True}).invoke(item)


def test_an_answer_longer_than_the_context_is_aligned_in_parts_and_nothing_is_lost(aligner):
    long = "\n\n".join(f"Paragraph {i} says a few words about bread and water." * 8 for i in range(12))
    out = aligner.invoke(AIMessage(long))  # the tiny model's context is 1024 tokens
    info = out.response_metadata["metaaligner"]
    assert info["chunks"]["parts"] > 1 and info["original"] == long
    if not info["aligned"]:  # every part kept its text: the whole answer, exactly
        assert out.content == long and len(info["chunks"]["fell_back"]) == info["chunks"]["parts"]
    streamed = "".join(c.content for c in aligner.stream(AIMessage(long)))
    assert streamed == out.content


def test_prompt_format_detection(tmp_path, tiny_model_dir):
    assert MetaAlignerRunnable(objectives=["honesty"], model="MetaAligner/MetaAligner-UltraFeedback-7B").resolved_prompt_format() == "ultrafeedback"
    assert MetaAlignerRunnable(objectives=["humour"], model="MetaAligner/MetaAligner-HH-RLHF-1.1B").resolved_prompt_format() == "hh-rlhf"
    assert MetaAlignerRunnable(objectives=["correct"], model="MetaAligner/MetaAligner-IMHI-7B").resolved_prompt_format() == "imhi"
    trained = tmp_path / "my-aligner"
    trained.mkdir()
    write_metadata(trained, prompt_format="ultrafeedback")
    assert MetaAlignerRunnable(objectives=["honesty"], model=str(trained)).resolved_prompt_format() == "ultrafeedback"
    unknown = MetaAlignerRunnable(objectives=["harmlessness"], model=str(tiny_model_dir))
    with pytest.raises(ValueError, match="Pass prompt_format='hh-rlhf'"):
        unknown.invoke("text")
    with pytest.raises(ValueError, match="unknown key 'honesty'.*hh-rlhf"):
        MetaAlignerRunnable(objectives=["honesty"], model="MetaAligner/MetaAligner-HH-RLHF-1.1B")


def test_bad_settings_are_rejected_at_construction(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        MetaAlignerRunnable(objectives=["harmlessness"], model=str(tmp_path / "missing.gguf"))
    with pytest.raises(ValueError, match="`backend` is 'vllm'"):
        MetaAlignerRunnable(objectives=["harmlessness"], backend="vllm")
    with pytest.raises(ValueError, match="max_new_tokens"):
        MetaAlignerRunnable(objectives=["harmlessness"], max_new_tokens=0)
    with pytest.raises(ValueError, match="`prompt_format` is 'hh'"):
        MetaAlignerRunnable(objectives=["harmlessness"], prompt_format="hh")
    with pytest.raises(ValueError, match="names one objective twice under two spellings"):
        MetaAlignerRunnable(objectives=["humour"], keep_margin={"humor": 1.0, "Humour": 2.0})
    with pytest.raises(ValueError, match="keep_margin"):
        MetaAlignerRunnable(objectives=["humour"], keep_margin={"humour": "a lot"})
    margins = MetaAlignerRunnable(objectives=["humour"], keep_margin={"Humor": 2, "*": 5}).keep_margin
    assert margins == {"humour": 2.0, "*": 5.0}


def test_importing_the_package_loads_no_heavy_library():
    code = "import sys, metaaligner_chain; print(json.dumps([m for m in ('torch', 'transformers', 'llama_cpp') if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_readme_idioms(aligner):
    """The three ways the README composes the aligner with a chain."""
    from operator import itemgetter

    prompt = ChatPromptTemplate.from_messages([("human", "{question}")])
    chain = prompt | GenericFakeChatModel(messages=iter([RESPONSES[0]] * 3))
    question = {"question": "How do I bake bread?"}
    piped = (chain | aligner).invoke(question)
    assert isinstance(piped, AIMessage) and piped.response_metadata["metaaligner"]["original"] == RESPONSES[0]
    as_dict = ({"query": itemgetter("question"), "response": chain} | aligner).invoke(question)
    assert set(as_dict) == {"query", "response", "original_response"}
    assert isinstance(as_dict["response"], AIMessage) and as_dict["original_response"].content == RESPONSES[0]
    wrapped = aligner.wrap(chain).invoke(question)
    assert wrapped.content == as_dict["response"].content  # same context: the question


def test_broken_text_is_repaired_for_the_model_and_kept_in_the_metadata(aligner):
    broken = "Water\x00 it weekly \ud800 and keep it in light."
    out = aligner.invoke({"query": "Plant care?\x00", "response": AIMessage(broken)})["response"]
    info = out.response_metadata["metaaligner"]
    # the model wrote a rewrite (aligned, or turned down whole as the tiny model runs to its token
    # limit): not skipped by an encoding error
    assert info["aligned"] or info["rejected"]
    assert "Error" not in (info["fallback_reason"] or "")
    assert info["original"] == broken
    prompt = aligner._prompt(coerce({"query": "Plant care?\x00", "response": broken}), "hh-rlhf")
    assert "Water it weekly \ufffd and keep it in light." in prompt and "\x00" not in prompt


def test_the_original_of_a_str_input_is_recoverable_from_the_verdict_event(aligner):
    from metaaligner_chain.tracing import VERDICT_EVENT

    events = Verdicts()
    out = aligner.invoke(RESPONSES[0], {"callbacks": [events]})
    list(aligner.stream(RESPONSES[1], {"callbacks": [events]}))
    aligner.batch(RESPONSES[:2], {"callbacks": [events]})
    assert [name for name, _ in events.seen] == [VERDICT_EVENT] * 4
    originals = [data["original"] for _, data in events.seen]
    assert originals == [RESPONSES[0], RESPONSES[1], RESPONSES[0], RESPONSES[1]]
    first = events.seen[0][1]
    assert (out == RESPONSES[0]) == (not first["changed"])
    assert first["aligned"] or first["fallback_reason"]


async def test_the_verdict_event_reaches_astream_events(aligner):
    from metaaligner_chain.tracing import VERDICT_EVENT

    events = [e async for e in aligner.astream_events(RESPONSES[2], version="v2")]
    (custom,) = [e for e in events if e["event"] == "on_custom_event"]
    assert custom["name"] == VERDICT_EVENT and custom["data"]["original"] == RESPONSES[2]


class Generations(BaseCallbackHandler):
    """The text of every model run (each candidate's generation is one)."""

    def __init__(self):
        self.texts = []

    def on_llm_end(self, response, **kwargs):
        self.texts.extend(g.text for gens in response.generations for g in gens)


def test_candidates_in_a_batch_are_sampled_chosen_and_repeatable(aligner):
    """candidates=3 on transformers: the aligner's own batched decoding, then one batched sampled
    generation per further candidate (the samples' seeds folded into one for the batch); a
    choice per item, the count in its metadata; the same batch gives the same samples."""
    several = aligner.model_copy(update={"candidates": 3, "keep_margin": None, "retry_loops": False})
    messages = [AIMessage(r) for r in RESPONSES]

    def run(runnable):
        seen = Generations()
        return runnable.batch(messages, {"callbacks": [seen]}), seen.texts

    (first, written), (again, rewritten) = run(several), run(several)
    plain, greedy = run(several.model_copy(update={"candidates": 1}))
    assert written == rewritten and [m.content for m in first] == [m.content for m in again]
    assert len(written) == 3 * len(messages) and written[:len(messages)] == greedy
    assert written[len(messages):2 * len(messages)] != greedy  # sampled, not greedy
    assert written[len(messages):2 * len(messages)] != written[2 * len(messages):]  # seeds of their own
    for out in first:
        index, count = out.response_metadata["metaaligner"]["chosen"]
        assert count == 3 and len(out.response_metadata["metaaligner"]["candidates"]) == 2
    assert "chosen" not in plain[0].response_metadata["metaaligner"]
