"""`ma-train`: the training pipeline as verbs — data build/score → train → merge → export → eval.

Each verb lives with its subpackage (`trainer/<data|train|export|evaluate>/cli.py`); the verbs
with a settings model take their options from it (`trainer.options`), so a recipe key, an option
and its help are one field. `run RECIPE` runs a whole recipe, every section in order. Heavy
libraries load inside the verbs, so `--help` stays fast.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from trainer.console import console, friendly
from trainer.data.cli import build_or_reuse, data_app, run_score
from trainer.evaluate.cli import eval_command, run_eval
from trainer.export.cli import export_app, merge_command, run_export
from trainer.recipe import load_recipe
from trainer.train.cli import run_train, tiny_command, train_command

app = typer.Typer(
    name="ma-train",
    help="Train a MetaAligner: build rows by dynamic objectives reformulation, then run the "
    "three SFT stages (warm-up → equal → preference).",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(data_app, name="data")
app.command("train")(train_command)
app.command("merge")(merge_command)
app.add_typer(export_app, name="export")
app.command("eval")(eval_command)
app.command("tiny")(tiny_command)

#: What `run` does with each recipe section, in this order.
STEPS = {"score": run_score, "data": build_or_reuse, "train": run_train, "export": run_export,
         "eval": run_eval}


@app.command("run")
@friendly
def run(
    recipe: Annotated[Path, typer.Argument(help="YAML recipe: sections score, data, train, export, eval.")],
    resume: Annotated[bool, typer.Option("--resume", help="Resume training from checkpoints.")] = False,
) -> None:
    """Run a whole recipe, each section it has, in order: score, data build, train, export, eval.

    A data build whose inputs, settings and row-writing code are unchanged is reused."""
    steps = load_recipe(recipe)
    start = time.time()
    for name, step in STEPS.items():
        settings = getattr(steps, name)
        if settings is None:
            continue
        if name == "train" and resume:
            settings = settings.model_copy(update={"resume": True})
        if name == "export" and settings.recipe is None:
            settings = settings.model_copy(update={"recipe": str(recipe)})
        step(settings)
    console.print(f"{recipe}: done in {(time.time() - start) / 60:.1f} min")


def main() -> None:
    """The `ma-train` entry point: training verbs run with a fast allocator when one is installed
    (`trainer.train.allocator`; about twice the CPU training speed), then the Typer app."""
    if len(sys.argv) > 1 and sys.argv[1] in ("train", "run"):
        from trainer.train.allocator import reexec_with_fast_allocator

        reexec_with_fast_allocator()
    app()


if __name__ == "__main__":  # `torchrun -m trainer.cli train ...`
    main()
