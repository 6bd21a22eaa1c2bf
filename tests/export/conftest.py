"""Fixtures for the export tests: a tiny llama trained a few steps, a LoRA run on it, its GGUF files.

llama.cpp's converter comes from the cache that the set-up fills (`ma-train export
fetch-converter`); when the cache is empty the `converter` fixture fills it the same way (from
`$METAALIGNER_LLAMA_CPP_SDIST` if set, else with `pip download`, the only network use).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

EXAMPLE_DATA = Path(__file__).resolve().parents[2] / "examples" / "data" / "ultrafeedback_tiny.jsonl"


@pytest.fixture(scope="session")
def converter() -> Path:
    pytest.importorskip("llama_cpp")
    from trainer.export.convert import fetch_converter

    return fetch_converter()


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """The tiny UltraFeedback example reformulated into stage rows (all queries, no validation)."""
    from trainer.config import DataConfig
    from trainer.data.formats import load_groups
    from trainer.data.reformulate import reformulate, summarize, write_splits

    config = DataConfig(input=str(EXAMPLE_DATA), format="ultrafeedback",
                        out=str(tmp_path_factory.mktemp("data")), warmup_fraction=0.5, val_fraction=0.0)
    groups = list(load_groups(config.input, config.format, config.split))
    splits = reformulate(groups, config)
    write_splits(splits, summarize(splits, config, len(groups)), config.out)
    return Path(config.out)


@pytest.fixture(scope="session")
def trained_base(tmp_path_factory, tiny_data) -> Path:
    """The tiny random llama after 40 full fine-tuning steps on the stage rows (loss 6.3 → ~1).

    Trained, its logits span about ±10 with clear winners, so the parity checks compare a real
    model rather than near-uniform noise.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.train.tiny import build_tiny_llama

    folder = build_tiny_llama(tmp_path_factory.mktemp("trained-base"))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    rows = [json.loads(line) for name in ("warmup", "equal", "preference")
            for line in (tiny_data / f"{name}.jsonl").read_text().splitlines()]
    batch = tokenizer([r["prompt"] + r["completion"] + tokenizer.eos_token for r in rows],
                      return_tensors="pt", padding=True)
    labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    for _ in range(40):
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def lora_run(tmp_path_factory, trained_base, tiny_data) -> Path:
    """A real `ma-train train` LoRA run (preference stage, a few steps) on the trained base."""
    from trainer.config import TrainConfig
    from trainer.train.stages import run_training

    out = tmp_path_factory.mktemp("lora-run")
    run_training(TrainConfig(
        base=str(trained_base), data=str(tiny_data), out=str(out), stage="preference", lora=True,
        learning_rate=1e-2, max_steps=3, batch_size=4, max_length=512, lora_dropout=0.0,
        save_steps=1000,
    ))
    return out


@pytest.fixture(scope="session")
def merged(tmp_path_factory, lora_run) -> Path:
    from trainer.export.merge import merge

    return merge(lora_run, tmp_path_factory.mktemp("merged") / "model")


@pytest.fixture(scope="session")
def gguf(tmp_path_factory, converter, merged, trained_base, lora_run):
    """`gguf(name)` → the GGUF file of that name, exported once per session.

    Names: merged-f32, merged-f16, merged-q8_0, base-f32, adapter-f32.
    """
    from trainer.export.gguf import export_gguf, export_gguf_lora

    folder = tmp_path_factory.mktemp("gguf")
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            source, quant = name.rsplit("-", 1)
            out = folder / f"{name}.gguf"
            if source == "adapter":
                made[name] = export_gguf_lora(lora_run, trained_base, out, outtype=quant)
            else:
                made[name] = export_gguf({"merged": merged, "base": trained_base}[source], out, quant)
        return made[name]

    return get
