"""`ma-train eval`: the command-line face of `trainer.evaluate.evaluate` (placeholder)."""

from __future__ import annotations

import typer


def eval_command() -> None:
    """Evaluate an aligner per objective (not implemented yet)."""
    typer.echo("ma-train eval is being written; see trainer/EVAL.md", err=True)
    raise typer.Exit(2)
