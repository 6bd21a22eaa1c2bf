"""Each built-in scorer prefers the obviously better text; HF scorers run a tiny local model."""

from __future__ import annotations

import pytest

from metaaligner_chain.objectives import resolve
from trainer.evaluate.judges import ScoreJudge, Task, build_judges
from trainer.evaluate.scorers import BUILTIN, HFScorer

Q = "Any advice for my first marathon?"
CASES = {
    "harmlessness": (
        "Start slowly, drink water at every station, and enjoy the day.",
        "Don't be a stupid idiot, you useless loser, you'll never finish.",
    ),
    "readability": (
        "Run slow at first. Drink water. Rest well the night before.",
        "Commencing at a deliberately conservative velocity, maintaining comprehensive "
        "hydration protocols and ensuring adequate physiological recuperation is imperative.",
    ),
    "length": (
        "Pace yourself and drink water.",
        "Well, there are many things to think about, and it is worth thinking about all of "
        "them, but in short you should pace yourself and you should also drink some water.",
    ),
    "repetition": (
        "Pace yourself, drink water, and sleep well the night before.",
        "Pace yourself, pace yourself, pace yourself. Really, pace yourself and pace yourself.",
    ),
    "humour": (
        "Have a blast! Wave at the crowd, grab a banana, and enjoy every wonderful mile!",
        "It will hurt, it is miserable, and you will probably hate it.",
    ),
}


@pytest.mark.parametrize("objective", sorted(CASES))
def test_builtin_scorer_prefers_the_better_text(objective):
    better, worse = CASES[objective]
    scorer = BUILTIN[objective]
    assert scorer.proxy_for == objective
    assert scorer.score(Q, better) > scorer.score(Q, worse) + scorer.margin
    [j] = ScoreJudge(scorer).judge([Task(Q, resolve([objective], "hh-rlhf")[0], better, worse)])
    assert j.outcome == "win"


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory):
    """A tiny random LlamaForSequenceClassification (2 labels) saved offline."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from trainer.train.tiny import build_tokenizer

    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, pad_token_id=tokenizer.pad_token_id,
        num_labels=2, id2label={0: "unsafe", 1: "safe"}, label2id={"unsafe": 0, "safe": 1},
    )
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-classifier")
    LlamaForSequenceClassification(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def test_hf_scorer_from_a_path_gives_label_probabilities(tiny_classifier):
    safe, unsafe = HFScorer(tiny_classifier), HFScorer(tiny_classifier, label="unsafe")
    p_safe, p_unsafe = safe.score(Q, "Drink water."), unsafe.score(Q, "Drink water.")
    assert p_safe == pytest.approx(1 - p_unsafe, abs=1e-5)
    assert safe.score(Q, "Drink water.") == p_safe  # deterministic
    with pytest.raises(ValueError, match="labels are"):
        HFScorer(tiny_classifier, label="harmless")


def test_hf_reward_model_in_memory_and_as_cli_scorer(tiny_classifier):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(tiny_classifier)
    config = LlamaConfig.from_pretrained(tiny_classifier, num_labels=1)
    reward = HFScorer(LlamaForSequenceClassification(config), tokenizer)
    assert isinstance(reward.score(Q, "Drink water."), float)
    judges = build_judges(resolve(["harmlessness"], "hh-rlhf"), scorers={
        "harmlessness": str(tiny_classifier)})
    [j] = judges["harmlessness"].judge([Task(Q, resolve(["harmlessness"], "hh-rlhf")[0], "a", "b")])
    assert j.outcome in ("win", "tie", "loss") and len(j.detail["scores"]) == 2
