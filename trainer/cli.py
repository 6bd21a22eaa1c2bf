"""`ma-train`: the training pipeline as verbs — data build/score → train → merge → export → eval.

Each verb is a thin function over a config dataclass (`trainer.config`); `--config FILE` reads the
verb's section of a YAML recipe and flags given on the command line override it. `run RECIPE`
runs a whole recipe. Heavy libraries load inside the verbs, so `--help` stays fast.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from trainer.config import (
    DataConfig,
    Recipe,
    ScoreConfig,
    TrainConfig,
    build,
    load_recipe,
    read_section,
)
from trainer.eval_cli import eval_command
from trainer.export_cli import export_app, merge_command

app = typer.Typer(
    name="ma-train",
    help="Train a MetaAligner: build rows by dynamic objectives reformulation, then run the "
    "three SFT stages (warm-up → equal → preference).",
    no_args_is_help=True,
    add_completion=False,
)
data_app = typer.Typer(help="Turn preference data into training rows.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(export_app, name="export")
app.command("eval")(eval_command)
app.command("merge")(merge_command)
console = Console(stderr=True)

ConfigOpt = Annotated[
    Optional[Path], typer.Option("--config", "-c", help="YAML recipe; flags override its section.")
]


def friendly(func):
    """Show a user error (bad setting, missing file) as one red line and exit 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (ValueError, FileNotFoundError, ImportError) as err:
            console.print(f"[red]error:[/red] {escape(str(err))}", soft_wrap=True)
            raise typer.Exit(2) from err

    return wrapper


def settings(cls: type, config: Path | None, section: str, verb: str, **flags: Any) -> Any:
    """The verb's dataclass from the recipe section (if any) with the given flags on top."""
    values = read_section(config, section) if config else {}
    values.update({k: v for k, v in flags.items() if v is not None and v != [] and v != {}})
    return build(cls, values, f"`ma-train {verb}` (flags and --config)")


def pairs(items: list[str] | None, flag: str) -> dict[str, str] | None:
    """`["k=v", ...]` → `{k: v}`, with an error naming the flag."""
    if not items:
        return None
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"`{flag}` got {item!r}; write KEY=VALUE, e.g. {flag} harmlessness=...")
        result[key.strip()] = value.strip()
    return result


def show_table(title: str, rows: list[tuple], headers: tuple[str, ...]) -> None:
    table = Table(title=title)
    for header in headers:
        table.add_column(header)
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    console.print(table)


# --- data -------------------------------------------------------------------------------------


def run_build(config: DataConfig) -> dict:
    """Read, reformulate, write; print and return the summary."""
    from rich.progress import track

    from trainer.data import load_groups
    from trainer.reformulate import reformulate, summarize, write_splits

    start = time.time()
    with console.status(f"reading {config.input}"):
        groups = load_groups(config.input, config.format, config.split)
    splits = reformulate(groups, config, lambda items: track(items, "reformulating", console=console))
    summary = summarize(splits, config, len(groups))
    out = write_splits(splits, summary, config.out)
    rows = [(name, info["rows"], ", ".join(f"{k} {v}" for k, v in info["objectives"].items()))
            for name, info in summary["files"].items()]
    show_table(f"{out} ({len(groups)} queries, {time.time() - start:.1f}s)", rows, ("file", "rows", "objectives"))
    return summary


@data_app.command("build")
@friendly
def data_build(
    input: Annotated[Optional[str], typer.Argument(help="JSONL/JSON/CSV/Parquet file or dataset id.")] = None,
    format: Annotated[Optional[str], typer.Option(help="ultrafeedback | hh-rlhf | helpsteer | generic")] = None,
    out: Annotated[Optional[str], typer.Option(help="Output folder.")] = None,
    prompt_format: Annotated[Optional[str], typer.Option(help="hh-rlhf | ultrafeedback | imhi")] = None,
    seed: Annotated[Optional[int], typer.Option()] = None,
    warmup_fraction: Annotated[Optional[float], typer.Option(help="Share of equal rows copied as identity rows.")] = None,
    tie_tolerance: Annotated[Optional[float], typer.Option(help="Scores this close are a tie.")] = None,
    val_fraction: Annotated[Optional[float], typer.Option(help="Share of queries held out.")] = None,
    objective: Annotated[Optional[list[str]], typer.Option(help="Objective key to keep (repeatable).")] = None,
    describe: Annotated[Optional[list[str]], typer.Option(help="KEY='Name: description' for a new objective.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Rows for the three stages by dynamic objectives reformulation (Algorithm 1)."""
    run_build(settings(
        DataConfig, config, "data", "data build", input=input, format=format, out=out,
        prompt_format=prompt_format, seed=seed, warmup_fraction=warmup_fraction,
        tie_tolerance=tie_tolerance, val_fraction=val_fraction,
        objectives=tuple(objective) if objective else None, descriptions=pairs(describe, "--describe"),
    ))


def run_score(config: ScoreConfig) -> Path:
    from trainer.score import score_file

    start = time.time()
    out, stats = score_file(config, console=console)
    rows = [(key, s["model"], s["responses"], f"{s['mean']:.3f}", f"{s['std']:.3f}") for key, s in stats.items()]
    show_table(f"{out} ({time.time() - start:.1f}s)", rows, ("objective", "model", "responses", "raw mean", "raw std"))
    return out


@data_app.command("score")
@friendly
def data_score(
    input: Annotated[Optional[str], typer.Argument(help="Raw data in one of the formats.")] = None,
    format: Annotated[Optional[str], typer.Option(help="ultrafeedback | hh-rlhf | helpsteer | generic")] = None,
    out: Annotated[Optional[str], typer.Option(help="Generic-format JSONL to write.")] = None,
    objective: Annotated[Optional[list[str]], typer.Option(help="KEY=REWARD_MODEL (repeatable).")] = None,
    round_to: Annotated[Optional[float], typer.Option(help="Round rewards to this step.")] = None,
    batch_size: Annotated[Optional[int], typer.Option()] = None,
    config: ConfigOpt = None,
) -> None:
    """Label responses per objective with sequence-classification reward models."""
    run_score(settings(
        ScoreConfig, config, "score", "data score", input=input, format=format, out=out,
        models=pairs(objective, "--objective"), round_to=round_to, batch_size=batch_size,
    ))


# --- train ------------------------------------------------------------------------------------


def run_train(config: TrainConfig) -> dict:
    from trainer.stages import run_training

    start = time.time()
    metadata = run_training(config, console=console)
    if os.environ.get("RANK", "0") != "0":  # one summary per distributed run
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


@app.command("train")
@friendly
def train(
    base: Annotated[Optional[str], typer.Option(help="Base causal LM (hub id or folder).")] = None,
    data: Annotated[Optional[str], typer.Option(help="Folder from `ma-train data build`.")] = None,
    out: Annotated[Optional[str], typer.Option(help="RUN_DIR.")] = None,
    stage: Annotated[Optional[str], typer.Option(help="warmup | equal | preference | all")] = None,
    lora: Annotated[Optional[bool], typer.Option("--lora/--full", help="LoRA (default) or full fine-tuning.")] = None,
    lora_r: Annotated[Optional[int], typer.Option()] = None,
    lora_alpha: Annotated[Optional[int], typer.Option()] = None,
    lora_dropout: Annotated[Optional[float], typer.Option()] = None,
    lora_target: Annotated[Optional[list[str]], typer.Option(help="Module to wrap (repeatable).")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Default 2e-4 (LoRA) / 1e-5 (full).")] = None,
    epochs: Annotated[Optional[float], typer.Option()] = None,
    max_steps: Annotated[Optional[int], typer.Option(help="Steps per stage; overrides epochs.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Per device.")] = None,
    grad_accum: Annotated[Optional[int], typer.Option()] = None,
    max_length: Annotated[Optional[int], typer.Option()] = None,
    bf16: Annotated[Optional[bool], typer.Option("--bf16/--no-bf16", help="Default: on when the GPU has it.")] = None,
    gradient_checkpointing: Annotated[Optional[bool], typer.Option("--gradient-checkpointing/--no-gradient-checkpointing")] = None,
    resume: Annotated[Optional[bool], typer.Option("--resume", help="Resume from the last checkpoint.")] = None,
    save_steps: Annotated[Optional[int], typer.Option()] = None,
    seed: Annotated[Optional[int], typer.Option()] = None,
    config: ConfigOpt = None,
) -> None:
    """Run the SFT stages; RUN_DIR ends with the merged model, tokenizer and metaaligner.json."""
    run_train(settings(
        TrainConfig, config, "train", "train", base=base, data=data, out=out, stage=stage,
        lora=lora, lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
        lora_targets=tuple(lora_target) if lora_target else None, learning_rate=lr, epochs=epochs,
        max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum, max_length=max_length,
        bf16=bf16, gradient_checkpointing=gradient_checkpointing, resume=resume,
        save_steps=save_steps, seed=seed,
    ))


# --- run, tiny --------------------------------------------------------------------------------


@app.command("run")
@friendly
def run(
    recipe: Annotated[Path, typer.Argument(help="YAML recipe with data/score/train sections.")],
    resume: Annotated[bool, typer.Option("--resume", help="Resume training from checkpoints.")] = False,
) -> None:
    """Run a whole recipe, each section if given: score, data build, train, export, eval."""
    steps: Recipe = load_recipe(recipe)
    start = time.time()
    if steps.score:
        run_score(steps.score)
    if steps.data:
        run_build(steps.data)
    if steps.train:
        run_train(dataclasses.replace(steps.train, resume=True) if resume else steps.train)
    if steps.export:
        from trainer.export import export_adapter

        e = steps.export
        out = export_adapter(e.run, e.adapter_dir, e.base, e.base_name, e.recipe or str(recipe))
        console.print(f"adapter written to {out}")
    if steps.eval:
        from trainer.eval_cli import run_rewrite_eval

        run_rewrite_eval(steps.eval)
    console.print(f"{recipe}: done in {(time.time() - start) / 60:.1f} min")


def main() -> None:
    """The `ma-train` entry point: training verbs run with a fast allocator when one is installed
    (`trainer.allocator`; about twice the CPU training speed), then the Typer app."""
    import sys

    if len(sys.argv) > 1 and sys.argv[1] in ("train", "run"):
        from trainer.allocator import reexec_with_fast_allocator

        reexec_with_fast_allocator()
    app()


@app.command("tiny")
@friendly
def tiny(
    out_dir: Annotated[Path, typer.Argument(help="Folder for the tiny random llama model.")],
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Build a tiny random llama model + tokenizer offline (a base for demos and tests)."""
    from trainer.tiny import build_tiny_llama

    path = build_tiny_llama(out_dir, seed=seed)
    console.print(f"tiny llama written to {path}")


if __name__ == "__main__":  # `torchrun -m trainer.cli train ...`
    main()
