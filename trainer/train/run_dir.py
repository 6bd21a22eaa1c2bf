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


_MODEL_FILES = ("config.json", "adapter_config.json", "model.safetensors", "pytorch_model.bin")


def check_run_dir(out: Path, base: str, prompt_format: str, reuse: bool) -> None:
    """Refuse a RUN_DIR this trainer did not make, and, when earlier stages are to be reused
    (`--resume`, or one `--stage` continuing a previous one), stages made from another base model
    or prompt format."""
    if not out.is_dir():
        return
    foreign = [p.name for p in out.iterdir() if p.name in _MODEL_FILES or p.suffix == ".gguf"]
    if foreign and not (out / "stages").is_dir():
        raise ValueError(
            f"`out` {str(out)!r} holds a model this trainer did not make ({', '.join(sorted(foreign))}, "
            "no stages/ folder); training would write over it. Give RUN_DIR a folder of its own, "
            "e.g. --out runs/my-aligner."
        )
    if not reuse:
        return
    for stage in STAGES:
        path = out / "stages" / stage / METADATA_FILE
        if not path.is_file():
            continue
        made = json.loads(path.read_text())
        for key, now in (("base_model", base), ("prompt_format", prompt_format)):
            if made.get(key) not in (None, now):
                raise ValueError(
                    f"`out` {str(out)!r} holds stages/{stage} trained with {key} {made[key]!r}, but "
                    f"this run's is {now!r}; continuing would mix the two. Use the run's own "
                    f"{'--base' if key == 'base_model' else 'data'}, or a new --out."
                )


def checkpoints(stage_dir: Path) -> list[Path]:
    """The trainer's `checkpoint-<step>` folders of a stage, newest first."""
    found = [p for p in stage_dir.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]), reverse=True)


def checkpoint_problem(checkpoint: Path) -> str | None:
    """Why a checkpoint cannot be resumed from (a killed save leaves one half-written), or None."""
    import zipfile

    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, ValueError) as exc:
        return f"trainer_state.json unreadable ({exc.__class__.__name__})"
    weights = list(checkpoint.glob("*.safetensors"))
    if not weights:
        return "no weights (*.safetensors)"
    from safetensors import safe_open

    for file in weights:
        try:
            with safe_open(str(file), framework="pt") as handle:
                handle.keys()
        except Exception as exc:  # safetensors raises its own error types for a torn file
            return f"{file.name} unreadable ({exc})"
    for name in ("optimizer.pt", "scheduler.pt"):
        file = checkpoint / name
        try:
            with zipfile.ZipFile(file) as archive:  # torch.save writes a zip archive
                bad = archive.testzip()
        except (OSError, zipfile.BadZipFile) as exc:
            return f"{name} unreadable ({exc.__class__.__name__})"
        if bad is not None:
            return f"{name} damaged ({bad})"
    return None


def resumable_checkpoint(stage_dir: Path, say: Any) -> Path | None:
    """The newest checkpoint of a stage that can be resumed from. Damaged newer ones are renamed
    `<name>.damaged` (so the trainer never picks them) and reported through `say`."""
    for checkpoint in checkpoints(stage_dir):
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            return checkpoint
        aside = checkpoint.with_name(checkpoint.name + ".damaged")
        checkpoint.rename(aside)
        say(f"{checkpoint} is damaged ({problem}); moved to {aside.name}, trying the one before")
    return None
