"""`ma-train` command tree, YAML recipes and the `data build` verb."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trainer.cli import app, settings
from trainer.config import DataConfig, TrainConfig, load_recipe

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

VERBS = [
    [], ["data"], ["data", "build"], ["data", "score"], ["train"], ["merge"], ["export"],
    ["export", "gguf"], ["export", "gguf-lora"], ["eval"], ["run"], ["tiny"],
]


@pytest.mark.parametrize("verb", VERBS, ids=lambda v: " ".join(v) or "ma-train")
def test_help_of_every_verb(verb):
    result = runner.invoke(app, [*verb, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_importing_the_cli_loads_no_heavy_library():
    code = (
        "import sys, trainer.cli; "
        "print([m for m in ('torch', 'transformers', 'trl', 'datasets', 'peft') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_tiny_recipe_in_examples_loads_and_checks():
    recipe = load_recipe(ROOT / "examples" / "train_tiny.yaml")
    assert recipe.data == DataConfig(
        input="examples/data/ultrafeedback_tiny.jsonl", format="ultrafeedback", out="runs/tiny-data",
        seed=0, warmup_fraction=0.5, tie_tolerance=0.0, val_fraction=0.2,
    )
    assert recipe.train.base == "runs/tiny-base" and recipe.train.data == recipe.data.out
    assert recipe.train.stages == ("warmup", "equal", "preference")
    assert not recipe.train.lora and recipe.train.lr == 3e-3 and recipe.train.epochs == 40
    assert (ROOT / recipe.data.input).is_file()


def test_every_example_recipe_loads():
    recipes = sorted([*(ROOT / "examples").glob("**/train*.yaml"), *(ROOT / "examples").glob("**/recipe.yaml")])
    assert len(recipes) >= 2
    for path in recipes:
        assert load_recipe(path).train is not None


def test_unknown_key_in_a_recipe_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  base: b\n  data: d\n  out: o\n  learning_rat: 0.1\n")
    with pytest.raises(ValueError, match="unknown key\\(s\\) learning_rat; known keys:.*learning_rate"):
        load_recipe(path)


def test_flags_override_the_file(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("train:\n  base: b\n  data: d\n  out: o\n  epochs: 3\n  lora: true\n")
    config = settings(TrainConfig, path, "train", "train", epochs=1.0, lora=False, out=None)
    assert (config.epochs, config.lora, config.out) == (1.0, False, "o")
    assert config.lr == 1e-5  # the paper's rate for full fine-tuning


def test_train_without_base_names_the_missing_key():
    result = runner.invoke(app, ["train", "--data", "d", "--out", "o"])
    assert result.exit_code == 2
    assert "missing required key(s): base" in result.output


def test_data_build_writes_rows_and_summary(tmp_path):
    out = tmp_path / "data"
    result = runner.invoke(app, [
        "data", "build", str(ROOT / "examples" / "data" / "hh_rlhf_tiny.jsonl"), "--format", "hh-rlhf",
        "--out", str(out), "--val-fraction", "0", "--seed", "3",
    ])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["prompt_format"] == "hh-rlhf" and summary["seed"] == 3
    for name in ("warmup.jsonl", "equal.jsonl", "preference.jsonl", "val/preference.jsonl"):
        lines = (out / name).read_text().splitlines()
        assert len(lines) == summary["files"][name]["rows"]
        for line in lines:
            assert set(json.loads(line)) == {"prompt", "completion", "objectives", "mode"}
    assert summary["files"]["preference.jsonl"]["rows"] == 5


def test_data_build_bad_format_is_a_clean_error(tmp_path):
    result = runner.invoke(app, ["data", "build", "x.jsonl", "--format", "alpaca", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "`format` is 'alpaca'; choose one of ultrafeedback, hh-rlhf, helpsteer, generic" in result.output
