"""Hostile or odd input is contained (issue 16, item 4): nothing to align costs no model call; broken
text is repaired for the model and kept byte for byte; images stay in the message; a value of the
wrong type is an error that names its field, the value and the fix. On the tiny in-process model."""

from __future__ import annotations

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, HumanMessage

from metaaligner_chain import MetaAlignerRunnable
from metaaligner_chain.coerce import clean_text, coerce
from metaaligner_chain.render import render

IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
IMAGE_V1 = {"type": "image", "url": "https://example.com/plant.png"}
EMPTY_REASON = "the response is empty; nothing to align"


@pytest.fixture(scope="module")
def aligner(tiny_model_dir):
    return MetaAlignerRunnable(
        objectives=["harmlessness", "helpfulness"], model=str(tiny_model_dir),
        prompt_format="hh-rlhf", max_new_tokens=12,
        retry_loops=False,  # one model call an item: the tiny model's rewrites all run to 12 tokens
    )


class ModelCalls(BaseCallbackHandler):
    """The prompts the aligner's model run was given and what it wrote (its traced LLM runs)."""

    def __init__(self):
        self.prompts, self.outputs = [], []

    def on_llm_start(self, serialized, prompts, **kwargs):
        self.prompts.extend(prompts)

    def on_llm_end(self, response, **kwargs):
        self.outputs.append(response.generations[0][0].text)


def _calls(aligner, value):
    calls = ModelCalls()
    return aligner.invoke(value, {"callbacks": [calls]}), calls


# -- nothing to align --------------------------------------------------------------------------


@pytest.mark.parametrize("empty", ["", " ", "\n\t \n"])
def test_an_empty_answer_is_returned_as_it_is_without_a_model_call(aligner, empty):
    out, calls = _calls(aligner, empty)
    assert out == empty and calls.prompts == []
    message, calls = _calls(aligner, AIMessage(empty, id="m1"))
    assert message.content == empty and message.id == "m1" and calls.prompts == []
    info = message.response_metadata["metaaligner"]
    assert info["fallback_reason"] == EMPTY_REASON and info["aligned"] is False
    assert info["original"] == empty
    batch = aligner.batch([{"query": "q", "response": empty}, {"query": "q", "response": empty}])
    assert [b["response"] for b in batch] == [empty, empty]


def test_a_message_with_only_an_image_comes_back_whole_without_a_model_call(aligner):
    message = AIMessage(content=[IMAGE_V1], id="m2")
    out, calls = _calls(aligner, message)
    assert calls.prompts == []
    assert out.content == [IMAGE_V1] and out.id == "m2"
    assert out.response_metadata["metaaligner"]["fallback_reason"] == EMPTY_REASON


# -- per-call objectives are checked as the constructor checks them ---------------------------


@pytest.mark.parametrize(
    ("objectives", "error", "message"),
    [
        ([], ValueError, r"`objectives` is (\[\]|empty); name at least one"),
        (["kindness"], ValueError, r"`objectives` has unknown key 'kindness'"),
        (["harmlessness", "harmlessness"], ValueError, r"`objectives` lists 'harmlessness' more than once"),
    ],
)
def test_per_call_objectives_are_rejected_like_the_constructors(aligner, objectives, error, message):
    with pytest.raises(error, match=message):
        MetaAlignerRunnable(objectives=objectives, model=aligner.model, prompt_format="hh-rlhf")
    with pytest.raises(error, match=message):
        aligner.invoke({"query": "q", "response": "r", "objectives": objectives})
    (result,) = aligner.batch([{"query": "q", "response": "r", "objectives": objectives}],
                              return_exceptions=True)
    assert isinstance(result, error)


# -- broken text -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "broken",
    ["Water\x00 it weekly and keep it in light.", "Water it \ud800weekly and keep it in light.",
     "\ud83d Water\x00\x07 it weekly\udfff and keep it in light."],
)
def test_broken_text_is_repaired_before_the_model_and_kept_byte_for_byte(aligner, broken):
    repaired = clean_text(broken)
    out, calls = _calls(aligner, {"query": "Plant care?\x00\ud800", "response": AIMessage(broken)})
    clean, clean_calls = _calls(aligner, {"query": clean_text("Plant care?\x00\ud800"),
                                          "response": AIMessage(repaired)})
    assert calls.prompts == clean_calls.prompts  # the model read the repaired text
    assert calls.outputs == clean_calls.outputs  # and wrote the same: no encoding error
    assert "\x00" not in calls.prompts[0] and "\ud800" not in calls.prompts[0]
    info = out["response"].response_metadata["metaaligner"]
    assert not str(info["fallback_reason"]).startswith("aligner failed")
    as_bytes = broken.encode("utf-8", "surrogatepass")
    assert info["original"].encode("utf-8", "surrogatepass") == as_bytes
    assert out["original_response"].content.encode("utf-8", "surrogatepass") == as_bytes
    as_str = aligner.invoke({"query": "q", "response": broken})
    assert as_str["original_response"].encode("utf-8", "surrogatepass") == as_bytes


# -- content blocks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ([{"type": "text", "text": "Sleep eight hours."}, IMAGE],
         [{"type": "text", "text": "ALIGNED"}, IMAGE]),
        ([IMAGE, {"type": "text", "text": "Sleep eight hours."}],
         [IMAGE, {"type": "text", "text": "ALIGNED"}]),
        ([IMAGE_V1, {"type": "text", "text": "Sleep eight "}, IMAGE, "hours."],
         [IMAGE_V1, {"type": "text", "text": "ALIGNED"}, IMAGE]),
        ([{"type": "text", "text": "Sleep "}, "eight hours."], "ALIGNED"),
    ],
)
def test_the_aligned_text_takes_the_text_blocks_place_and_images_stay_in_theirs(content, expected):
    message = AIMessage(content=content, id="m3")
    request = coerce(message)
    assert request.response == "Sleep eight hours."
    out = render(request, "ALIGNED", {"aligned": True})
    assert out.content == expected and out.id == "m3"
    assert render(request, "Sleep eight hours.", {}).content == (  # the original kept: as it came
        "Sleep eight hours." if expected == "ALIGNED" else content
    )


def test_images_stay_in_the_message_through_invoke_batch_and_agent_states(aligner):
    message = AIMessage(content=[IMAGE_V1, {"type": "text", "text": "Sleep eight hours."}, IMAGE])
    out, calls = _calls(aligner, message)
    assert len(calls.prompts) == 1 and "Sleep eight hours." in calls.prompts[0]
    assert [b for b in out.content if b.get("type") != "text"] == [IMAGE_V1, IMAGE]
    assert out.content[0] == IMAGE_V1 and out.content[-1] == IMAGE
    assert out.response_metadata["metaaligner"]["original"] == "Sleep eight hours."
    (as_dict,) = aligner.batch([{"query": "q", "response": message}])
    assert as_dict["original_response"] is message
    assert [b["type"] for b in as_dict["response"].content] == ["image", "text", "image_url"]
    state = aligner.invoke({"messages": [HumanMessage("How long to sleep?"), message]})
    assert [b for b in state["messages"][-1].content if b.get("type") != "text"] == [IMAGE_V1, IMAGE]


def test_a_streamed_message_keeps_its_images(aligner):
    message = AIMessage(content=[{"type": "text", "text": "Sleep eight hours."}, IMAGE])
    total = None
    for chunk in aligner.stream(message):
        total = chunk if total is None else total + chunk
    assert [b for b in total.content if isinstance(b, dict) and b["type"] != "text"] == [IMAGE]
    assert total.text == aligner.invoke(message).text


# -- wrong types -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        ({"query": "q", "response": "r", "objectives": 42}, TypeError,
         r"`objectives` is 42; give a list such as \['harmlessness', 'length'\], or leave it out"),
        ({"query": "q", "response": "r", "objectives": "harmlessness"}, TypeError,
         r"`objectives` is 'harmlessness'; give a list"),
        ({"query": "q", "response": "r", "objectives": [42]}, TypeError,
         r"`objectives` item 42 is a int; pass a key \(str\), 'Name: description' \(str\) or an Objective"),
        ({"query": "q", "response": "r", "chat_history": None}, TypeError,
         r"`chat_history` is None; give the earlier turns as a list of messages, or leave "
         r"`chat_history` out"),
        ({"query": "q", "response": "r", "history": "Hi"}, TypeError, r"`history` is 'Hi'; give"),
        ({"query": "q", "response": "r", "chat_history": [HumanMessage("Hi"), 42]}, TypeError,
         r"`chat_history` item 1 is 42 \(int\); give LangChain messages"),
        ({"query": 42, "response": "r"}, TypeError,
         r"`query` is 42 \(int\); pass the query as text, a message, a list of messages"),
        ({"question": ["Hi", {"x": 1}], "answer": "r"}, TypeError, r"`question` item 1 is \{'x': 1\}"),
        ({"query": "q", "response": 3}, TypeError,
         r"`response` is a int \(3\); the response to align must be a str or a LangChain message"),
        ({"input": "q", "output": ["a", "list"]}, TypeError, r"`output` is a list \(\['a', 'list'\]\)"),
        ({"messages": "Hi"}, TypeError, r"`messages` is 'Hi'; an agent state holds a list"),
        ({"messages": [AIMessage("a"), None]}, TypeError, r"`messages` item 1 is None"),
        ({"query": "q"}, ValueError, r"put the response to align under one of response, answer, output"),
        (42, TypeError, r"input is a int; pass a str, a LangChain message, or a dict"),
    ],
)
def test_a_wrong_type_names_the_field_the_value_and_the_fix(aligner, value, error, message):
    with pytest.raises(error, match=message):
        aligner.invoke(value)
    (result,) = aligner.batch([value], return_exceptions=True)
    assert isinstance(result, error)


def test_history_and_query_take_what_langchain_reads_as_messages(aligner):
    as_pairs = aligner.invoke({"chat_history": [("human", "Hi"), ("ai", "Hello")],
                               "query": [("human", "How long to sleep?")], "response": "Eight hours."})
    as_messages = aligner.invoke({"chat_history": [HumanMessage("Hi"), AIMessage("Hello")],
                                  "query": [HumanMessage("How long to sleep?")],
                                  "response": "Eight hours."})
    assert as_pairs["response"] == as_messages["response"]
