"""What a RUN_DIR holds and how its final model is made: the one place that reads a finished run.

RUN_DIR/stages/<stage>/ holds each finished stage (a LoRA adapter, or full weights) with
`stage_done.json`; RUN_DIR itself ends with the merged model. Training (`trainer.train.stages`)
writes it; merging and export (`trainer.export`) read it through these helpers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from metaaligner_chain.models.metadata import METADATA_FILE

STAGES = ("warmup", "equal", "preference")
DONE_FILE = "stage_done.json"
LOG_FILE = "log_history.json"


def last_stage(run: Path) -> Path:
    """The latest finished stage folder of RUN_DIR (its adapter or weights are the run's result)."""
    for stage in reversed(STAGES):
        folder = run / "stages" / stage
        if (folder / DONE_FILE).is_file():
            return folder
    raise FileNotFoundError(
        f"`run_dir` {str(run)!r} has no finished stage (stages/<stage>/{DONE_FILE}); pass the "
        "RUN_DIR written by `ma-train train --out RUN_DIR`, or finish it with `--resume`."
    )


def is_lora(stage: Path) -> bool:
    return (stage / "adapter_config.json").is_file()


def run_metadata(run: Path, stage: Path) -> dict[str, Any]:
    """The run's `metaaligner.json` (from RUN_DIR, else from the stage folder)."""
    for folder in (run, stage):
        if (folder / METADATA_FILE).is_file():
            return json.loads((folder / METADATA_FILE).read_text())
    return {}


def stored_dtype(base: str) -> Any:
    """The dtype the base model is stored in: training and merging run in float32, and the
    result is saved like the base (float32 when the config names no floating dtype)."""
    import torch
    from transformers import AutoConfig

    dtype = getattr(AutoConfig.from_pretrained(base), "dtype", None)
    dtype = getattr(torch, dtype, None) if isinstance(dtype, str) else dtype
    return dtype if isinstance(dtype, torch.dtype) and dtype.is_floating_point else torch.float32


def final_model(stage: Path, base: str | None) -> Any:
    """The run's result as one model in the base's dtype: the stage's LoRA adapter merged into
    `base` (exactly, in float32), or the stage's full weights (cast like `base` when given)."""
    import torch
    from transformers import AutoModelForCausalLM

    if not is_lora(stage):
        if base is None:  # keep the dtype the stage was saved in
            return AutoModelForCausalLM.from_pretrained(str(stage), dtype="auto")
        return AutoModelForCausalLM.from_pretrained(str(stage), dtype=torch.float32).to(stored_dtype(base))
    import warnings

    from peft import PeftModel

    # peft reads `model.is_gradient_checkpointing`, deprecated in transformers 5: not the user's doing
    warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    return PeftModel.from_pretrained(model, str(stage)).merge_and_unload().to(stored_dtype(base))
