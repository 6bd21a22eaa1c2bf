"""`merge`: a LoRA run → a standalone safetensors folder, equal to the run's own final model, idempotent."""

from __future__ import annotations

import hashlib
import json

import pytest


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_merge_writes_a_standalone_model(merged, lora_run, trained_base):
    names = {p.name for p in merged.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
            "tokenizer_config.json", "metaaligner.json"} <= names
    assert not any(name.startswith("adapter_") or name.endswith(".bin") for name in names)
    metadata = json.loads((merged / "metaaligner.json").read_text())
    recorded = json.loads((lora_run / "metaaligner.json").read_text())
    assert metadata["prompt_format"] == recorded["prompt_format"] == "ultrafeedback"
    assert metadata["objectives"] == recorded["objectives"]
    assert metadata["base_model"] == str(trained_base) and metadata["merged_from"] == str(lora_run)
    generation = json.loads((merged / "generation_config.json").read_text())
    assert generation["eos_token_id"] == json.loads((trained_base / "generation_config.json").read_text())["eos_token_id"]


def test_merged_weights_equal_the_runs_final_model(merged, lora_run, trained_base):
    from safetensors.torch import load_file

    ours, final, base = (load_file(str(d / "model.safetensors")) for d in (merged, lora_run, trained_base))
    assert ours.keys() == final.keys()
    for name in ours:
        assert (ours[name] - final[name]).abs().max() < 1e-6, name
    changed = [n for n in ours if (ours[n] - base[n]).abs().max() > 1e-4]
    assert changed and all("proj" in n for n in changed), "LoRA changes only the wrapped linears"


def test_merge_twice_gives_the_same_folder(merged, lora_run):
    from trainer.export.merge import merge

    before = digest(merged)
    assert merge(lora_run, merged) == merged
    assert digest(merged) == before
    assert not [p for p in merged.parent.iterdir() if p.name.startswith(".")], "no staging left"


def test_merge_refuses_to_overwrite_other_folders(lora_run, tmp_path):
    from trainer.export.merge import merge

    with pytest.raises(ValueError, match="overlaps `run_dir`"):
        merge(lora_run, lora_run / "merged")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an earlier merge"):
        merge(lora_run, tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_merge_needs_a_finished_run(tmp_path):
    from trainer.export.merge import merge

    with pytest.raises(FileNotFoundError, match="no finished stage"):
        merge(tmp_path, tmp_path.parent / "out")


def test_merge_names_a_base_it_cannot_find(lora_run, tmp_path):
    from trainer.export.merge import merge

    with pytest.raises(FileNotFoundError, match="--base BASE_DIR"):
        merge(lora_run, tmp_path / "out", base=str(tmp_path / "moved-base"))
    assert not (tmp_path / "out").exists()


def test_merge_saves_in_the_base_dtype(tmp_path):
    """A bf16 base stays bf16 after the (float32) merge; the adapter here is made by peft directly."""
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.export.merge import merge
    from trainer.train.tiny import build_tiny_llama

    base = build_tiny_llama(tmp_path / "base")
    AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).to(torch.bfloat16).save_pretrained(base)
    stage = tmp_path / "run" / "stages" / "preference"
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
                           LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=False))
    model.save_pretrained(stage)
    AutoTokenizer.from_pretrained(base).save_pretrained(stage)
    (stage / "stage_done.json").write_text("{}")
    out = merge(tmp_path / "run", tmp_path / "merged", base=str(base))
    weights = load_file(str(out / "model.safetensors"))
    assert {t.dtype for t in weights.values()} == {torch.bfloat16}
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
