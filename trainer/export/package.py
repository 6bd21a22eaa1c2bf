"""Ship a LoRA run as the folder the package loads (`metaaligner_chain/default_aligner/` is one)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from metaaligner_chain.models.metadata import METADATA_FILE
from trainer.export.gguf import export_gguf_lora
from trainer.export.merge import read_json
from trainer.train.run_dir import is_lora, last_stage, run_metadata


def export_adapter(
    run_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    base_dir: str | os.PathLike[str] | None = None,
    base_name: str | None = None,
    recipe: str | None = None,
) -> Path:
    """Ship a LoRA run as one folder both backends load: the peft adapter in fp16
    (`adapter=` on transformers), the same adapter as `adapter.gguf` (`lora_path=` on llama.cpp)
    and `metaaligner.json`. `base_name` replaces the training machine's base path in the files."""
    import torch
    from safetensors.torch import load_file, save_file

    run, out = Path(run_dir), Path(out_dir)
    stage = last_stage(run)
    if not is_lora(stage):
        raise ValueError(f"`run` {str(run)!r} was trained with full fine-tuning; it has no adapter "
                         f"to ship. Export its model with `ma-train export gguf {run} --out FILE.gguf`.")
    metadata = run_metadata(run, stage)
    base = Path(base_dir or metadata.get("base_model", ""))
    out.mkdir(parents=True, exist_ok=True)
    export_gguf_lora(run, base, out / "adapter.gguf", outtype="f16")
    weights = load_file(str(stage / "adapter_model.safetensors"))
    save_file({k: v.to(torch.float16) for k, v in weights.items()}, str(out / "adapter_model.safetensors"))
    config = read_json(stage / "adapter_config.json")
    if base_name:
        config["base_model_name_or_path"] = base_name
        metadata["base_model"] = base_name
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    metadata.pop("init_from", None)
    if recipe:
        metadata["recipe"] = recipe
    (out / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return out
