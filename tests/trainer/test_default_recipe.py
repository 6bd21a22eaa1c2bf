"""The default aligner's recipe: it loads, and `ma-train run` takes a tiny slice of the committed
corpus through data build, three stages, export and the held-out evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from metaaligner_chain.models.gguf_header import read_gguf_header
from trainer.cli import app
from trainer.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "examples" / "default_aligner" / "recipe.yaml"
CORPUS = ROOT / "examples" / "default_aligner" / "corpus" / "train"
HELD_OUT = ROOT / "examples" / "eval" / "heldout"


def test_the_recipe_names_every_step_and_real_inputs():
    recipe = load_recipe(RECIPE)
    assert recipe.data and recipe.train and recipe.export and recipe.eval
    assert (ROOT / recipe.data.input).is_dir() and (ROOT / recipe.eval.data).is_dir()
    assert recipe.train.data == recipe.data.out and recipe.export.run == recipe.train.out


def tiny_slice(path: Path) -> Path:
    """A few items of every kind from the corpus: rewrites, clean answers, a chain, earlier turns."""
    rows = [json.loads(line) for f in sorted(CORPUS.glob("*.jsonl")) for line in f.read_text().splitlines()]
    picked = ([r for r in rows if r["kind"] == "rewrite" and not r.get("context")][:4]
              + [r for r in rows if r["kind"] == "rewrite" and r.get("context")][:1]
              + [r for r in rows if r["kind"] == "clean"][:2]
              + [r for r in rows if r["kind"] == "chain"][:2])
    path.write_text("".join(json.dumps(r) + "\n" for r in picked))
    return path


def test_ma_train_run_goes_from_corpus_to_report_on_a_tiny_slice(tiny_model_dir, tmp_path):
    pytest.importorskip("llama_cpp")
    from trainer.export.convert import fetch_converter

    fetch_converter()  # cached by `make setup`
    recipe = yaml.safe_load(RECIPE.read_text())
    held = [json.loads(line) for line in (HELD_OUT / "h1.jsonl").read_text().splitlines()[:3]]
    (tmp_path / "held").mkdir()
    (tmp_path / "held" / "few.jsonl").write_text("".join(json.dumps(r) + "\n" for r in held))
    recipe["data"].update(input=str(tiny_slice(tmp_path / "slice.jsonl")), out=str(tmp_path / "data"),
                          val_fraction=0.0)
    recipe["train"].update(base=str(tiny_model_dir), data=str(tmp_path / "data"),
                           out=str(tmp_path / "run"), max_steps=2, bf16=False)
    recipe["export"].update(run=str(tmp_path / "run"), adapter_dir=str(tmp_path / "adapter"))
    recipe["eval"].update(data=str(tmp_path / "held"), out=str(tmp_path / "report"),
                          aligner=str(tmp_path / "run"), max_new_tokens=8)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))

    result = CliRunner().invoke(app, ["run", str(path)])
    assert result.exit_code == 0, result.output

    adapter = tmp_path / "adapter"
    assert {p.name for p in adapter.iterdir()} == {"adapter.gguf", "metaaligner.json"}  # once
    metadata = json.loads((adapter / "metaaligner.json").read_text())
    assert metadata["base_model"] == recipe["export"]["base_name"]
    export = recipe["export"]  # what "auto" reads: the margins per objective, "*" for the rest
    assert metadata["keep_margin"] == {**export["keep_margin_per_objective"], "*": export["keep_margin"]}
    for key in ("lora_r", "lora_alpha"):
        assert metadata["training"][key] == recipe["train"][key]
    alpha = read_gguf_header(adapter / "adapter.gguf")["adapter.lora.alpha"]
    assert alpha == metadata["training"]["lora_alpha"]
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    assert results["items"] == 3 and results["runs"] == 1 and results["label"] == "held-out v2"
    assert "time(s) in this folder" in (tmp_path / "report" / "report.md").read_text()
