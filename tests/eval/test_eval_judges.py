"""Verdict parsing, both-order debiasing and the LangChain judge path with fake chat models."""

from __future__ import annotations

import pytest
from langchain_core.language_models.fake_chat_models import (
    FakeListChatModel,
    GenericFakeChatModel,
)
from langchain_core.messages import AIMessage

from metaaligner_chain.objectives import resolve
from trainer.evaluate.judges import (
    ChatJudge, ScoreJudge, Task, build_judges, combine_orders, parse_verdict,
)
from trainer.evaluate.scorers import BUILTIN

HARMLESS = resolve(["harmlessness"], "hh-rlhf")[0]


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        ("B is more polite.\nVerdict: B", "B"),
        ("**Verdict:** A", "A"),
        ("Both avoid offence equally.\nVerdict: tie", "tie"),
        ("verdict - Response B.", "B"),
        ("The verdict is tie", "tie"),
        ("I first thought Verdict: A, but on reflection\nVerdict: B", "B"),
        ("[[A]]", "A"),
        ("My final answer: [[C]]", "tie"),
        ("B", "B"),
        ("Response A.", "A"),
        ("Equal", "tie"),
        ("Both responses have merits.", None),
        ("A is shorter but B is kinder.", None),
        ("", None),
    ],
)
def test_parse_verdict(answer, verdict):
    assert parse_verdict(answer) == verdict


@pytest.mark.parametrize(
    ("x_first", "y_first", "outcome"),
    [
        ("A", "B", "win"),  # x preferred in both positions
        ("B", "A", "loss"),
        ("A", "A", "tie"),  # judge always picks the first slot: position bias cancels
        ("B", "B", "tie"),
        ("tie", "tie", "tie"),
        ("A", "tie", "win"),
        ("tie", "A", "loss"),
        (None, "B", "invalid"),
        ("A", None, "invalid"),
    ],
)
def test_both_orders_cancel_position_bias(x_first, y_first, outcome):
    assert combine_orders(x_first, y_first) == outcome


def task(x="safe answer", y="rude answer"):
    return Task("How do I ask my neighbour to be quieter?", HARMLESS, x, y)


def test_chat_judge_asks_both_orders_with_the_description():
    model = GenericFakeChatModel(messages=iter([AIMessage("Verdict: A"), AIMessage("Verdict: B")]))
    seen = []
    judge = ChatJudge(model, name="fake", max_concurrency=1)
    original_batch = model.batch

    def spy(inputs, config=None, **kw):
        seen.extend(inputs)
        return original_batch(inputs, config=config, **kw)

    object.__setattr__(model, "batch", spy)
    [j] = judge.judge([task()])
    assert j.outcome == "win" and j.detail["verdicts"] == ["A", "B"]
    first, second = (msgs[1][1] for msgs in seen)
    assert HARMLESS.description in first
    assert first.index("safe answer") < first.index("rude answer")
    assert second.index("rude answer") < second.index("safe answer")


def test_chat_judge_scripted_answers_including_unparseable():
    script = [
        "x is kinder. Verdict: A", "Verdict: B",  # win
        "Verdict: A", "Verdict: A",  # position bias -> tie
        "Hmm, hard to say.", "Verdict: A",  # unparseable -> invalid, not guessed
        "[[B]]", "[[A]]",  # loss
    ]
    judge = ChatJudge(FakeListChatModel(responses=script), name="fake", max_concurrency=1)
    got = judge.judge([task(), task(), task(), task()])
    assert [j.outcome for j in got] == ["win", "tie", "invalid", "loss"]
    assert got[2].detail["answers"][0] == "Hmm, hard to say."
    assert got[2].detail["verdicts"] == [None, "A"]
    assert judge.name == "chat:fake"


def test_score_judge_uses_the_margin():
    judge = ScoreJudge(BUILTIN["length"])
    short, long_ = "Paris.", "The capital of France is the lovely city of Paris, of course."
    [win, loss, tie] = judge.judge([task(short, long_), task(long_, short), task(short, short)])
    assert (win.outcome, loss.outcome, tie.outcome) == ("win", "loss", "tie")


def test_build_judges_offline_and_overrides():
    objectives = resolve(["harmlessness", "humour"], "hh-rlhf")
    judges = build_judges(objectives, "offline")
    assert judges["harmlessness"].name == "scorer:offensive-language"
    chat = FakeListChatModel(responses=["Verdict: tie"])
    judges = build_judges(objectives, chat, scorers={"humor": BUILTIN["humour"]})  # alias
    assert judges["harmlessness"].name.startswith("chat:")
    assert judges["humour"].name == "scorer:cheerfulness"
    judges = build_judges(objectives, {"humour": chat})  # per objective; the rest offline
    assert judges["humour"].name.startswith("chat:")
    assert judges["harmlessness"].name == "scorer:offensive-language"


def test_build_judges_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"--scorer helpfulness=MODEL"):
        build_judges(resolve(["helpfulness"], "hh-rlhf"), "offline")
    with pytest.raises(ValueError, match="provider:model"):
        build_judges(resolve(["harmlessness"], "hh-rlhf"), "gpt4")
    with pytest.raises(ValueError, match="objective=MODEL"):
        build_judges(resolve(["harmlessness"], "hh-rlhf"), scorers={"humour": "x"})
