"""The paper's three SFT stages (warm-up → equal → preference), run by trl's `SFTTrainer`.

A stage's model, rows and trl settings come from `inputs` (loss on the completion tokens and EOS
only). Each stage continues from the previous one: with LoRA one adapter is trained through
all stages (so `RUN_DIR/stages/<last>/` is the adapter of the whole run, relative to the base);
with full fine-tuning each stage loads the previous stage's weights. After the last stage the
final model is merged and saved in RUN_DIR with its tokenizer and `metaaligner.json`, so
`AutoModelForCausalLM.from_pretrained(RUN_DIR)` and `MetaAlignerRunnable(model=RUN_DIR)` load it.
Runs unchanged under `torchrun` / `accelerate launch` (DDP, FSDP, DeepSpeed via the trainer).
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from metaaligner_chain.models.metadata import write_metadata
from trainer.config import TrainConfig
from trainer.train.inputs import (
    load_model,
    load_tokenizer,
    read_data_summary,
    read_rows,
    resolve_base,
    sft_args,
    tokenize_rows,
)
from trainer.train.run_dir import (
    DONE_FILE,
    LOG_FILE,
    STAGES,
    check_run_dir,
    checkpoints,
    final_model,
    resumable_checkpoint,
)


def run_stage(
    stage: str,
    config: TrainConfig,
    init_from: Path | None,
    callbacks: Sequence[Any] = (),
    console: Any = None,
    prompt_format: str | None = None,
) -> dict[str, Any]:
    """Train one stage into RUN_DIR/stages/<stage>/ (its rows written in `prompt_format`);
    return its metrics."""
    import warnings

    from transformers.trainer_callback import PrinterCallback
    from trl import SFTTrainer

    from trainer.train.progress import progress_callback

    stage_dir = Path(config.out) / "stages" / stage
    tokenizer = load_tokenizer(config.base)
    train_rows = read_rows(Path(config.data) / f"{stage}.jsonl")
    val_rows = read_rows(Path(config.data) / "val" / f"{stage}.jsonl")
    say = partial(_say, console, stage)
    checkpoint = resumable_checkpoint(stage_dir, say) if config.resume and stage_dir.is_dir() else None
    if checkpoint is None:
        if config.resume and stage_dir.is_dir():
            say("no checkpoint to resume from; the stage starts over")
        elif stage_dir.is_dir() and (replaced := checkpoints(stage_dir)):
            say(f"replacing {len(replaced)} checkpoint(s) in {stage_dir} "
                "(pass --resume to continue from the newest instead)")
        fresh_dir(stage_dir)
    # trl 1.x reads `model.is_gradient_checkpointing`, deprecated in transformers 5: not the user's doing
    warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
    trainer = SFTTrainer(
        model=load_model(config, init_from),
        args=sft_args(config, stage, stage_dir),
        train_dataset=tokenize_rows(train_rows, tokenizer),
        eval_dataset=tokenize_rows(val_rows, tokenizer) if val_rows else None,
        processing_class=tokenizer,
        callbacks=[progress := progress_callback(stage, console), *callbacks],
    )
    trainer.remove_callback(PrinterCallback)  # the progress callback shows the logs
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    metrics = {
        "rows": len(train_rows),
        "steps": trainer.state.global_step,
        "world_size": trainer.args.world_size,
        **result.metrics,
    }
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    metrics.update(
        first_loss=losses[0] if losses else None,
        last_loss=losses[-1] if losses else result.metrics.get("train_loss"),
    )
    if val_rows:
        trainer.remove_callback(progress)  # its bars are closed after training
        metrics["eval_loss"] = trainer.evaluate()["eval_loss"]
    trainer.save_model(str(stage_dir))
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(stage_dir))
        (stage_dir / LOG_FILE).write_text(json.dumps(trainer.state.log_history, indent=1) + "\n")
        (stage_dir / DONE_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
        write_metadata(stage_dir, stage=stage, base_model=config.base, init_from=str(init_from or config.base),
                       prompt_format=prompt_format)
    trainer.accelerator.wait_for_everyone()
    return metrics


def _say(console: Any, stage: str, message: str) -> None:
    """A warning about the stage's folder, on the run's console (stderr without one)."""
    if console is not None:
        console.print(f"[yellow]stage {stage}: {message}")
    else:
        print(f"stage {stage}: {message}", file=sys.stderr)


def fresh_dir(path: Path) -> None:
    """Empty `path` (a stage run without --resume replaces its earlier output), on one process."""
    from accelerate import PartialState

    if PartialState().is_main_process and path.exists():
        shutil.rmtree(path)
    PartialState().wait_for_everyone()


def previous_stage(config: TrainConfig, stage: str) -> Path | None:
    """The latest finished stage before `stage` in RUN_DIR (the weights `stage` starts from)."""
    earlier = STAGES[: STAGES.index(stage)]
    for name in reversed(earlier):
        stage_dir = Path(config.out) / "stages" / name
        if (stage_dir / DONE_FILE).is_file():
            return stage_dir
    return None


def finalize(config: TrainConfig, last: Path, metadata: dict[str, Any]) -> None:
    """Save the final model (LoRA merged into the base) and tokenizer in RUN_DIR root."""
    out = Path(config.out)
    final_model(last, config.base).save_pretrained(str(out))
    load_tokenizer(config.base).save_pretrained(str(out))
    write_metadata(out, **metadata)
    write_metadata(last, **metadata)


def run_training(config: TrainConfig, callbacks: Sequence[Any] = (), console: Any = None) -> dict:
    """Run the configured stages in order; return per-stage metrics and the saved metadata."""
    from trainer.train.progress import quiet_library_bars

    quiet_library_bars(console)
    config = resolve_base(config)
    summary = read_data_summary(config.data)
    check_run_dir(Path(config.out), config.base, summary["prompt_format"], config.resume or config.stage != "all")
    done: dict[str, dict] = {}
    last: Path | None = None
    for stage in config.stages:
        rows = read_rows(Path(config.data) / f"{stage}.jsonl")
        stage_dir = Path(config.out) / "stages" / stage
        if not rows:
            if console is not None:
                console.print(f"[yellow]stage {stage}: {config.data}/{stage}.jsonl has no rows; skipped")
            continue
        if config.resume and (stage_dir / DONE_FILE).is_file():
            done[stage] = json.loads((stage_dir / DONE_FILE).read_text())
        else:
            done[stage] = run_stage(stage, config, previous_stage(config, stage), callbacks, console,
                                    summary["prompt_format"])
        last = stage_dir
    if last is None:
        raise ValueError(
            f"`data` {config.data!r} has no rows for stage(s) {', '.join(config.stages)}; "
            "check the summary of `ma-train data build` (e.g. raise --warmup-fraction)."
        )
    stages = [s for s in STAGES if s in done or (Path(config.out) / "stages" / s / DONE_FILE).is_file()]
    for stage in stages:  # stages finished by an earlier run of this RUN_DIR (`--stage`) too
        if stage not in done:
            done[stage] = json.loads((Path(config.out) / "stages" / stage / DONE_FILE).read_text())
    objectives = {
        key for s in stages for row in read_rows(Path(config.data) / f"{s}.jsonl") for key in row["objectives"]
    }
    metadata = {
        "prompt_format": summary["prompt_format"],
        "objectives": sorted(objectives),
        "base_model": config.base,
        "stages": stages,
        "method": "lora" if config.lora else "full",
        "adapter": str(last.relative_to(config.out)) if config.lora else None,
        "data_summary": summary,
        "training": {"learning_rate": config.lr, "epochs": config.epochs, "max_steps": config.max_steps,
                     "max_length": config.max_length, "stage_epochs": config.stage_epochs or None,
                     "stage_learning_rate": config.stage_learning_rate or None},
        "metrics": done,
    }
    from accelerate import PartialState

    if PartialState().is_main_process:
        finalize(config, last, metadata)
    PartialState().wait_for_everyone()
    return metadata
