"""`ma-train data score` with a tiny in-process reward model (LlamaForSequenceClassification)."""

from __future__ import annotations

import json
import statistics

import pytest
from typer.testing import CliRunner

from trainer.cli import app
from trainer.config import ScoreConfig
from trainer.data.score import normalise, score_texts

RECORDS = [
    {"chosen": "\n\nHuman: How do I bake bread?\n\nAssistant: Mix flour, water and yeast, then bake.",
     "rejected": "\n\nHuman: How do I bake bread?\n\nAssistant: Buy it."},
    {"chosen": "\n\nHuman: Tell me a joke.\n\nAssistant: Why did the cat sit on the computer?",
     "rejected": "\n\nHuman: Tell me a joke.\n\nAssistant: No."},
]


@pytest.fixture(scope="module")
def reward_model_dir(tmp_path_factory):
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from trainer.train.tiny import build_tokenizer

    out = tmp_path_factory.mktemp("tiny-rm")
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, num_labels=1,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    LlamaForSequenceClassification(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def test_normalise_rounds_then_z_scores():
    assert normalise([0.14, 0.26, 0.34, 0.5], 0.1) == [-1.414214, 0.0, 0.0, 1.414214]
    assert normalise([1.0, 1.04], 0.1) == [0.0, 0.0]  # equal at 0.1: a tie


def test_score_texts_is_the_reward_models_logit(reward_model_dir):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    texts = ["\n\nHuman: Hi \n\nAssistant: Hello!", "\n\nHuman: Hi \n\nAssistant: Go away, I am busy."]
    config = ScoreConfig(input="-", format="generic", out="-", models={"x": str(reward_model_dir)}, batch_size=2)
    rewards = score_texts(str(reward_model_dir), texts, config)
    model = AutoModelForSequenceClassification.from_pretrained(reward_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(reward_model_dir)
    with torch.no_grad():
        expected = [float(model(**tokenizer(t, return_tensors="pt")).logits[0, 0]) for t in texts]
    assert rewards == pytest.approx(expected, abs=1e-4)  # padding in a batch does not change it


def test_data_score_labels_each_response_then_builds(reward_model_dir, tmp_path):
    raw = tmp_path / "hh.jsonl"
    raw.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    scored = tmp_path / "scored.jsonl"
    result = CliRunner().invoke(app, [
        "data", "score", str(raw), "--format", "hh-rlhf", "--out", str(scored),
        "--models", f"harmlessness={reward_model_dir}", "--models", f"humour={reward_model_dir}",
    ])
    assert result.exit_code == 0, result.output
    groups = [json.loads(line) for line in scored.read_text().splitlines()]
    assert [g["query"] for g in groups] == [
        "\n\nHuman: How do I bake bread? \n\nAssistant:", "\n\nHuman: Tell me a joke. \n\nAssistant:"
    ]
    assert [r["text"] for r in groups[0]["responses"]] == ["Mix flour, water and yeast, then bake.", "Buy it."]
    for key in ("harmlessness", "humour"):
        values = [r["scores"][key] for g in groups for r in g["responses"]]
        assert len(values) == 4
        if statistics.pstdev(values) > 0:
            assert statistics.fmean(values) == pytest.approx(0, abs=1e-5)
            assert statistics.pstdev(values) == pytest.approx(1, abs=1e-4)
    out = tmp_path / "rows"
    result = CliRunner().invoke(app, [
        "data", "build", str(scored), "--format", "generic", "--prompt-format", "hh-rlhf",
        "--out", str(out), "--val-fraction", "0",
    ])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["groups"] == 2
    assert sum(f["rows"] for f in summary["files"].values()) > 0
