"""`ma-train train` (options generated from `TrainConfig`) and `ma-train tiny`."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer

from trainer.config import TrainConfig
from trainer.console import console, friendly, show_table
from trainer.options import command


def run_train(config: TrainConfig) -> dict:
    """Run the stages; print one row per stage (one summary per distributed run)."""
    from trainer.train.stages import run_training

    start = time.time()
    metadata = run_training(config, console=console)
    if os.environ.get("RANK", "0") != "0":
        return metadata
    rows = [
        (stage, m["rows"], m["steps"], _fmt(m.get("first_loss")), _fmt(m.get("last_loss")), _fmt(m.get("eval_loss")))
        for stage, m in metadata["metrics"].items()
    ]
    show_table(f"{config.out} ({time.time() - start:.1f}s, {metadata['method']})", rows,
               ("stage", "rows", "steps", "first loss", "last loss", "val loss"))
    return metadata


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


train_command = friendly(command(TrainConfig, "train", "train", run_train))


@friendly
def tiny_command(
    out_dir: Annotated[Path, typer.Argument(help="Folder for the tiny random llama model.")],
    seed: Annotated[int, typer.Option(help="Seeds the random weights.")] = 0,
) -> None:
    """Build a tiny random llama model + tokenizer offline (a base for demos and tests)."""
    from trainer.train.tiny import build_tiny_llama

    console.print(f"tiny llama written to {build_tiny_llama(out_dir, seed=seed)}")
