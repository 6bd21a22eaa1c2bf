"""examples/default_aligner/soup.py: a GGUF LoRA read back into peft's layout, and adapters averaged
into a run that merges like a trained one."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "default_aligner" / "soup.py"


@pytest.fixture(scope="module")
def soup():
    spec = importlib.util.spec_from_file_location("soup", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stage(run: Path) -> Path:
    from trainer.train.run_dir import last_stage

    return last_stage(run)


def test_a_gguf_adapter_reads_back_as_the_trained_one(soup, gguf, lora_run, tmp_path):
    from safetensors.torch import load_file

    trained = load_file(str(_stage(lora_run) / "adapter_model.safetensors"))
    back = load_file(str(soup.adapter_from_gguf(gguf("adapter-f32"), _stage(lora_run), tmp_path)
                         / "adapter_model.safetensors"))
    assert back.keys() == trained.keys()
    q_b = next(k for k in trained if "q_proj.lora_B" in k)
    assert float(trained[q_b].abs().max()) > 0  # a trained B, so the row order is really checked
    for key, value in trained.items():
        scale = max(1.0, float(value.abs().max()))
        assert float((back[key] - value).abs().max()) <= 1e-6 * scale, key


def test_the_rank_read_back_must_match_the_template(soup, gguf, lora_run, tmp_path):
    template = tmp_path / "template"
    template.mkdir()
    config = json.loads((_stage(lora_run) / "adapter_config.json").read_text())
    (template / "adapter_config.json").write_text(json.dumps({**config, "r": config["r"] * 2}))
    with pytest.raises(ValueError, match="rank"):
        soup.adapter_from_gguf(gguf("adapter-f32"), template, tmp_path / "out")


@pytest.mark.parametrize("combine", ["cat", "svd"])
def test_an_adapter_averaged_with_its_own_copy_merges_to_the_same_model(
        soup, gguf, lora_run, merged, tmp_path, combine):
    from safetensors.torch import load_file

    stage = _stage(lora_run)
    rank = json.loads((stage / "adapter_config.json").read_text())["r"]
    copy = soup.adapter_from_gguf(gguf("adapter-f32"), stage, tmp_path / "copy")
    out = soup.soup([copy, stage], tmp_path / "soup", combine, rank)
    expected = load_file(str(merged / "model.safetensors"))
    got = load_file(str(out / "model.safetensors"))
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert float((got[key] - value).abs().max()) <= 1e-4, key
    done = json.loads((out / "stages" / "preference" / "stage_done.json").read_text())
    assert done["combine"] == combine
