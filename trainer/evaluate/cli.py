"""`ma-train eval`: the command-line face of `trainer.evaluate.evaluate`; parses, then delegates.

Imports nothing heavy: the evaluation modules load when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from trainer.console import friendly


@friendly
def eval_command(
    data: Annotated[Path, typer.Option(help="TEST JSONL: {\"query\", \"response\", \"golden\"?}; "
                                       "without --objectives, written rewrite items (a file or "
                                       "folder, see trainer/EVAL.md).")],
    out: Annotated[Path, typer.Option(help="Output folder (reused: finished work resumes).")],
    objectives: Annotated[Optional[str], typer.Option(
        help="Comma-separated objective keys, e.g. harmlessness,readability,length. Leave out "
        "for rewrite items, which name their own.")] = None,
    aligner: Annotated[str, typer.Option(help="'default' (built-in aligner), a model path "
                                         "or hub id.")] = "default",
    judge: Annotated[Optional[list[str]], typer.Option(
        help="'offline' (built-in proxy scorers) or a chat model as provider:model, e.g. "
        "openai:gpt-4o; objective=JUDGE for one objective (repeatable). [default: offline]")
    ] = None,
    scorer: Annotated[Optional[list[str]], typer.Option(
        help="Per-objective HF reward/classifier model, objective=MODEL (repeatable).")] = None,
    policy: Annotated[Optional[str], typer.Option(
        help="provider:model that writes each row's response first.")] = None,
    prompt_format: Annotated[Optional[str], typer.Option(
        help="hh-rlhf, ultrafeedback or imhi (default: the aligner's own).")] = None,
    max_new_tokens: Annotated[Optional[int], typer.Option(help="Aligner output cap.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Evaluate only the first N rows.")] = None,
    bootstrap_rounds: Annotated[int, typer.Option(help="Bootstrap resamples for CIs.")] = 2000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
) -> None:
    """Per-objective win rates of the aligned answers, do-no-harm figures, report and plot."""
    from trainer.config import EvalConfig
    from trainer.evaluate.objectives import evaluate

    if objectives is None:
        run_rewrite_eval(EvalConfig(data=str(data), out=str(out), aligner=aligner,
                                    prompt_format=prompt_format,
                                    max_new_tokens=max_new_tokens or 384, label="cli"))
        return
    keys = _split(objectives)
    results = evaluate(
        data, aligner, keys, out, judge=_judges(judge or [], keys),
        scorers=_pairs(scorer or [], "--scorer"),
        prompt_format=prompt_format, policy=policy, max_new_tokens=max_new_tokens,
        limit=limit, bootstrap_rounds=bootstrap_rounds, seed=seed,
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


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _pairs(specs: list[str], flag: str) -> dict[str, str]:
    found = {}
    for spec in specs:
        key, sep, model = spec.partition("=")
        if not sep or not key.strip() or not model.strip():
            raise typer.BadParameter(
                f"`{flag}` is {spec!r}; write objective=MODEL, e.g. "
                "harmlessness=./my-reward-model.", param_hint=flag
            )
        found[key.strip()] = model.strip()
    return found


def _judges(specs: list[str], objectives: list[str]) -> str | dict[str, str]:
    """`--judge` values: one for all objectives and/or objective=JUDGE overrides."""
    shared = [s for s in specs if "=" not in s]
    if len(shared) > 1:
        raise typer.BadParameter(
            f"`--judge` has {len(shared)} judges for all objectives ({', '.join(shared)}); give "
            "one, and write objective=JUDGE for the others.", param_hint="--judge"
        )
    default = shared[0] if shared else "offline"
    overrides = _pairs([s for s in specs if "=" in s], "--judge")
    if not overrides:
        return default
    return {**{k: default for k in objectives if k not in overrides}, **overrides}


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def run_rewrite_eval(config: Any) -> dict:
    """Align written rewrite items (each naming its objectives) and judge them; print a summary."""
    from trainer.data.corpus import load
    from trainer.evaluate.rewrites import KNOWN_OBJECTIVES, default_aligner, evaluate, write_report

    source = Path(config.data)
    files = sorted(source.glob("*.jsonl")) if source.is_dir() else [source]
    items = load(files, KNOWN_OBJECTIVES)
    model = None if config.aligner == "default" else config.aligner
    run, name = default_aligner(model, config.prompt_format, config.max_new_tokens)
    results = evaluate(items, run, name, config.out, config.label, progress=typer.echo)
    report = write_report(results, Path(config.out))
    typer.echo(report.read_text())
    return results
