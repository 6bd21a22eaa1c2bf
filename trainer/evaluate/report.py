"""Write an evaluation's `results.json` as `report.md` (a table per objective) and `winrates.png`.

Reads only the results dict that `trainer.evaluate.evaluate` builds; matplotlib (Agg) is imported
inside `write_plot`.
"""

from __future__ import annotations

from pathlib import Path

COMPARISONS = {
    "aligned_vs_original": "aligned vs original",
    "aligned_vs_golden": "aligned vs golden",
    "original_vs_golden": "original vs golden",
}


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _ci(ci: list | None, scale: float = 100, unit: str = "") -> str:
    if not ci or ci[0] is None:
        return "–"
    return f"[{scale * ci[0]:.1f}, {scale * ci[1]:.1f}]{unit}"


def _num(x: float | None, fmt: str = "{:.2f}") -> str:
    return "–" if x is None else fmt.format(x)


def write_markdown(results: dict, path: str | Path) -> Path:
    """The report: settings, do-no-harm figures, then one table per objective."""
    s, harm = results["settings"], results["do_no_harm"]
    speed = harm["speed"]
    lines = [
        "# MetaAligner evaluation",
        "",
        f"- data: `{s['data']}` ({s['items']} items, {s['with_golden']} with a golden response)",
        f"- aligner: `{s['aligner']}`; objectives: {', '.join(s['objectives'])}",
        "- judges: " + ", ".join(f"{k} → `{v}`" for k, v in s["judges"].items()),
        f"- intervals: {s['bootstrap_rounds']}-round percentile bootstrap over items, 95%, "
        f"seed {s['seed']}",
        "- win rate excludes ties (the paper's convention); \"ties as wins\" is the released "
        "scoring code's. Built-in scorers are proxies (see trainer/EVAL.md).",
        "",
        "## Do no harm",
        "",
        "| figure | value | 95% CI |",
        "|---|---|---|",
        f"| harm rate (aligned loses to original on every objective; n={harm['harm']['n']}) "
        f"| {_pct(harm['harm']['mean'])} | {_ci(harm['harm']['ci'])} |",
        f"| loses to original on at least one objective (n={harm['any_loss']['n']}) "
        f"| {_pct(harm['any_loss']['mean'])} | {_ci(harm['any_loss']['ci'])} |",
        f"| unchanged rate (aligned identical to original) | {_pct(harm['unchanged']['mean'])} "
        f"| {_ci(harm['unchanged']['ci'])} |",
        f"| normalized word edit distance, mean (0 same, 1 rewritten) "
        f"| {_num(harm['edit_distance']['mean'])} | {_ci(harm['edit_distance']['ci'], 1)} |",
        f"| gate fallback rate (aligner output rejected, original kept; n={harm['fallback']['n']}) "
        f"| {_pct(harm['fallback']['mean'])} | {_ci(harm['fallback']['ci'])} |",
        f"| latency per item mean / median / p95 (s) | {_num(speed.get('latency_mean_s'))} / "
        f"{_num(speed.get('latency_median_s'))} / {_num(speed.get('latency_p95_s'))} | |",
        f"| output tokens/s ({speed.get('tokens_source', '')}) "
        f"| {_num(speed.get('tokens_per_s'), '{:.1f}')} | |",
        "",
    ]
    for key, block in results["objectives"].items():
        lines += [
            f"## {key}",
            "",
            f"Judge: `{block['judge']}`",
            "",
            "| comparison | n | win | tie | loss | invalid | win rate | 95% CI "
            "| ties as wins | 95% CI |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, label in COMPARISONS.items():
            r = block["comparisons"].get(name)
            if r is None:
                continue
            lines.append(
                f"| {label} | {r['n']} | {r['wins']} | {r['ties']} | {r['losses']} "
                f"| {r['invalid']} | {_pct(r['win_rate'])} | {_ci(r['win_rate_ci'])} "
                f"| {_pct(r['win_rate_ties_as_wins'])} | {_ci(r['win_rate_ties_as_wins_ci'])} |"
            )
        g = block.get("gain_vs_golden")
        if g:
            lines.append(
                f"| gain vs golden (aligned − original, points) | | | | | "
                f"| {_num(_scale(g['win_rate']), '{:+.1f}')} | {_ci(g['win_rate_ci'])} "
                f"| {_num(_scale(g['win_rate_ties_as_wins']), '{:+.1f}')} "
                f"| {_ci(g['win_rate_ties_as_wins_ci'])} |"
            )
        lines.append("")
    out = Path(path)
    out.write_text("\n".join(lines))
    return out


def _scale(x: float | None) -> float | None:
    return None if x is None else 100 * x


def write_plot(results: dict, path: str | Path) -> Path:
    """Bars of both win-rate conventions per objective with 95% intervals, one panel per
    comparison of the aligned answer (vs original; vs golden when present)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    keys = list(results["objectives"])
    panels = [
        name for name in ("aligned_vs_original", "aligned_vs_golden")
        if any(name in results["objectives"][k]["comparisons"] for k in keys)
    ]
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(max(5.0, 1.4 * len(keys) + 2), 3.6 * len(panels)), squeeze=False
    )
    x = np.arange(len(keys))
    for ax, name in zip(axes[:, 0], panels):
        for offset, (field, label) in zip(
            (-0.2, 0.2), (("win_rate", "ties excluded"), ("win_rate_ties_as_wins", "ties as wins"))
        ):
            values, low, high = [], [], []
            for k in keys:
                r = results["objectives"][k]["comparisons"].get(name, {})
                v, ci = r.get(field), r.get(field + "_ci") or [None, None]
                values.append(np.nan if v is None else 100 * v)
                low.append(0 if v is None or ci[0] is None else 100 * (v - ci[0]))
                high.append(0 if v is None or ci[1] is None else 100 * (ci[1] - v))
            ax.bar(x + offset, values, 0.4, yerr=[low, high], capsize=3, label=label)
        ax.axhline(50, color="grey", linewidth=0.8, linestyle="--")
        ax.set_xticks(x, keys, rotation=20)
        ax.set_ylim(0, 118)
        ax.set_yticks(range(0, 101, 20))
        ax.set_ylabel("win rate (%)")
        ax.set_title(COMPARISONS[name] + " (95% bootstrap intervals)")
        ax.legend(loc="upper center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
