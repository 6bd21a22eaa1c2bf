"""`ma-train data build | score`: options generated from `DataConfig` / `ScoreConfig`; and
`ma-train run`'s data step, which reuses a build whose inputs are unchanged (`build_or_reuse`)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from trainer.config import DataConfig, ScoreConfig
from trainer.console import console, friendly, show_table
from trainer.options import command

data_app = typer.Typer(help="Turn preference data into training rows.", no_args_is_help=True)


def build_or_reuse(config: DataConfig) -> dict:
    """`ma-train run`'s data step: reuse the build in `out` when its summary records the
    fingerprint of these inputs (files, settings, row-writing code); else build."""
    import json

    from trainer.data.fingerprint import changes, fingerprint

    found = fingerprint(config)
    summary_path = Path(config.out) / "summary.json"
    if found is None and summary_path.is_file():
        console.print(f"{config.out}: rebuilding (`input` {config.input!r} is not a local file or "
                      "folder, so its content is not fingerprinted)")
    if found is None or not summary_path.is_file():
        return run_build(config)
    summary = json.loads(summary_path.read_text())
    complete = all((Path(config.out) / name).is_file() for name in summary.get("files", {}))
    differ = changes(summary.get("fingerprint"), found) if complete else ["row files missing"]
    if differ:
        console.print(f"{config.out}: rebuilding ({', '.join(differ)})")
        return run_build(config)
    console.print(f"{config.out}: reused (inputs, settings and code unchanged since it was built; "
                  "`ma-train data build` rebuilds it)")
    return summary


def run_build(config: DataConfig) -> dict:
    """Read, reformulate, write (with the inputs' fingerprint in the summary); print and return
    the summary."""
    from rich.progress import track

    from trainer.data.fingerprint import fingerprint
    from trainer.data.formats import load_groups
    from trainer.data.reformulate import reformulate, summarize, write_splits

    start = time.time()
    inputs = fingerprint(config)  # taken before reading, so a file edited meanwhile rebuilds next time
    skipped: list[tuple[str, str]] | None = [] if config.skip_bad_rows else None
    with console.status(f"reading {config.input}"):
        groups = load_groups(config.input, config.format, config.split, skipped=skipped)
    for where, problem in skipped or []:
        console.print(f"[yellow]skipped {where}: {problem}")
    splits = reformulate(groups, config, lambda items: track(items, "reformulating", console=console))
    summary = summarize(splits, config, len(groups))
    if skipped is not None:
        summary["skipped_rows"] = [f"{where}: {problem}" for where, problem in skipped]
    summary["fingerprint"] = inputs
    out = write_splits(splits, summary, config.out)
    rows = [(name, info["rows"], ", ".join(f"{k} {v}" for k, v in info["objectives"].items()))
            for name, info in summary["files"].items()]
    show_table(f"{out} ({len(groups)} queries, {time.time() - start:.1f}s)", rows, ("file", "rows", "objectives"))
    return summary


def run_score(config: ScoreConfig) -> Path:
    """Score every response with the reward models; print the raw score statistics."""
    from trainer.data.score import score_file

    start = time.time()
    out, stats = score_file(config, console=console)
    rows = [(key, s["model"], s["responses"], f"{s['mean']:.3f}", f"{s['std']:.3f}") for key, s in stats.items()]
    show_table(f"{out} ({time.time() - start:.1f}s)", rows, ("objective", "model", "responses", "raw mean", "raw std"))
    return out


data_app.command("build")(friendly(command(DataConfig, "data", "data build", run_build)))
data_app.command("score")(friendly(command(ScoreConfig, "score", "data score", run_score)))
