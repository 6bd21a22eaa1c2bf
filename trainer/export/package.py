"""Ship a LoRA run as the folder the package loads (`metaaligner_chain/default_aligner/` is one):
the adapter once, as a GGUF LoRA, with its `metaaligner.json`."""

from __future__ import annotations

import json
import os
from pathlib import Path

from metaaligner_chain.models.metadata import METADATA_FILE
from trainer.export.gguf import export_gguf_lora
from trainer.export.merge import read_json
from trainer.train.run_dir import is_lora, last_stage, run_metadata

#: What earlier exports wrote beside `adapter.gguf`: the same adapter for peft, no longer shipped.
_PEFT_FILES = ("adapter_model.safetensors", "adapter_config.json")


def export_adapter(
    run_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    base_dir: str | os.PathLike[str] | None = None,
    base_name: str | None = None,
    recipe: str | None = None,
    keep_margin: float | None = None,
    keep_margin_per_objective: dict[str, float] | None = None,
) -> Path:
    """Ship a LoRA run as `adapter.gguf` (f16) and `metaaligner.json`, which records the adapter's
    rank, alpha and target modules under `training`. llama.cpp loads the adapter as `lora_path=` or
    folded into its base (`gguf_merge`); transformers loads that merged model dequantized, so no
    peft copy is shipped. `base_name` replaces the training machine's base path in both files'
    metadata; `keep_margin` is recorded for the runnable's `keep_margin="auto"`, as a mapping
    (`"*"`: `keep_margin`) when `keep_margin_per_objective` names margins per objective."""
    run, out = Path(run_dir), Path(out_dir)
    stage = last_stage(run)
    if not is_lora(stage):
        raise ValueError(f"`run` {str(run)!r} was trained with full fine-tuning; it has no adapter "
                         f"to ship. Export its model with `ma-train export gguf {run} --out FILE.gguf`.")
    metadata = run_metadata(run, stage)
    base = Path(base_dir or metadata.get("base_model", ""))
    out.mkdir(parents=True, exist_ok=True)
    export_gguf_lora(run, base, out / "adapter.gguf", outtype="f16", base_name=base_name)
    for earlier in _PEFT_FILES:  # an earlier export's peft copy would disagree with the new GGUF
        (out / earlier).unlink(missing_ok=True)
    lora = read_json(stage / "adapter_config.json")
    targets = lora["target_modules"]
    metadata.setdefault("training", {}).update(
        lora_r=lora["r"], lora_alpha=lora["lora_alpha"],
        lora_targets=sorted(targets) if isinstance(targets, (list, tuple, set)) else targets,
    )
    if base_name:
        metadata["base_model"] = base_name
    metadata.pop("init_from", None)
    if recipe:
        metadata["recipe"] = recipe
    if keep_margin_per_objective:
        star = {} if keep_margin is None else {"*": keep_margin}
        metadata["keep_margin"] = {**keep_margin_per_objective, **star}
    elif keep_margin is not None:
        metadata["keep_margin"] = keep_margin
    (out / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return out
