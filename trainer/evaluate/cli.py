"""`ma-train eval` (options generated from `EvalConfig`): rewrite items, or rows judged per objective.

Imports nothing heavy: the evaluation modules load when the command runs.
"""

from __future__ import annotations

from pathlib import Path

import typer

from trainer.config import EvalConfig
from trainer.console import friendly
from trainer.options import command, pairs


def run_eval(config: EvalConfig) -> dict:
    """Judge per objective when `objectives` are named, else align and judge rewrite items."""
    if not config.objectives:
        return run_rewrite_eval(config)
    from trainer.evaluate.objectives import evaluate

    out = Path(config.out)
    results = evaluate(
        config.data, config.aligner, list(config.objectives), out,
        judge=_judges(config.judge, config.objectives), scorers=dict(config.scorer),
        prompt_format=config.prompt_format, policy=config.policy,
        max_new_tokens=config.max_new_tokens, limit=config.limit,
        bootstrap_rounds=config.bootstrap_rounds, seed=config.seed,
    )
    harm = results["do_no_harm"]
    for key, block in results["objectives"].items():
        r = block["comparisons"]["aligned_vs_original"]
        typer.echo(f"{key}: aligned vs original {r['wins']}/{r['ties']}/{r['losses']} "
                   f"(win/tie/loss), win rate {_pct(r['win_rate'])}, "
                   f"ties as wins {_pct(r['win_rate_ties_as_wins'])}, invalid {r['invalid']}")
    typer.echo(f"harm rate {_pct(harm['harm']['mean'])}, "
               f"unchanged {_pct(harm['unchanged']['mean'])}"
               f"; wrote {out / 'report.md'}, {out / 'results.json'}, {out / 'winrates.png'}")
    return results


def _judges(specs: tuple[str, ...], objectives: tuple[str, ...]) -> str | dict[str, str]:
    """`judge` values: one for every objective (`EvalConfig` allows one) and objective=JUDGE
    overrides."""
    default = next((s for s in specs if "=" not in s), "offline")
    overrides = pairs([s for s in specs if "=" in s], "--judge", "objective=JUDGE")
    if not overrides:
        return default
    return {**{k: default for k in objectives if k not in overrides}, **overrides}


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def run_rewrite_eval(config: EvalConfig) -> dict:
    """Align written rewrite items (each naming its objectives) and judge them; print a summary."""
    from trainer.data.corpus import load
    from trainer.evaluate.rewrites import KNOWN_OBJECTIVES, default_aligner, evaluate, write_report

    source = Path(config.data)
    files = sorted(source.glob("*.jsonl")) if source.is_dir() else [source]
    items = load(files, KNOWN_OBJECTIVES)
    model = None if config.aligner == "default" else config.aligner
    run, name = default_aligner(model, config.prompt_format, config.max_new_tokens or 384)
    results = evaluate(items, run, name, config.out, config.label, progress=typer.echo)
    report = write_report(results, Path(config.out))
    typer.echo(report.read_text())
    return results


eval_command = friendly(command(EvalConfig, "eval", "eval", run_eval))
