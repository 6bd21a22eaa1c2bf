"""Figures from judgements: win/tie/loss, win rates under both tie conventions, harm, edits, speed.

Confidence intervals are `scipy.stats.bootstrap` percentile intervals over items, drawn per figure
with `rng=numpy.random.default_rng(seed)`: every figure of a run resamples the *same* items (the
same draws as the hand-written bootstrap this replaced, so earlier reports' numbers are
reproduced), and differences (gains) are bootstrapped paired.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

import numpy as np

CI_LEVEL = 0.95


@dataclass(frozen=True)
class Resampling:
    """How a run's intervals are drawn: `rounds` bootstrap resamples of its items, from `seed`."""

    rounds: int = 2000
    seed: int = 0


def interval(statistic: Callable[..., np.ndarray], columns: Sequence[np.ndarray],
             resampling: Resampling) -> list[float | None]:
    """The percentile interval of `statistic(*columns, axis=-1)`, the columns resampled together
    by item (`scipy.stats.bootstrap`, paired and vectorized).

    Resamples where the statistic is undefined (nan, e.g. a win rate when no decided comparison was
    drawn) are left out of the quantiles; scipy's own interval would be nan then. [None, None]
    when every resample is undefined.
    """
    from scipy import stats

    columns = [np.asarray(c, dtype=float) for c in columns]
    if len(columns[0]) < 2:  # scipy needs two items; one item resamples to itself
        value = _num(statistic(*columns, axis=-1))
        return [value, value]
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap(columns, statistic, n_resamples=resampling.rounds, paired=True,
                              vectorized=True, method="percentile", confidence_level=CI_LEVEL,
                              rng=np.random.default_rng(resampling.seed))
    low, high = res.confidence_interval
    if np.isfinite(low) and np.isfinite(high):
        return [float(low), float(high)]
    samples = res.bootstrap_distribution
    if not np.isfinite(samples).any():
        return [None, None]
    tail = (1 - CI_LEVEL) / 2
    low, high = stats.quantile(samples[np.isfinite(samples)], [tail, 1 - tail])
    return [float(low), float(high)]


def _flags(outcomes: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per item: (is win, is tie, is loss) as 0/1 columns."""
    arr = np.array([o or "" for o in outcomes], dtype=object)
    return tuple((arr == kind).astype(float) for kind in ("win", "tie", "loss"))


def _win_rate(w: np.ndarray, t: np.ndarray, l: np.ndarray, axis: int = -1) -> np.ndarray:
    """Ties excluded (the paper); nan where nothing was decided."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return w.sum(axis) / (w.sum(axis) + l.sum(axis))


def _ties_as_wins(w: np.ndarray, t: np.ndarray, l: np.ndarray, axis: int = -1) -> np.ndarray:
    """The released scoring code's convention; nan where nothing was compared."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w.sum(axis) + t.sum(axis)) / (w.sum(axis) + t.sum(axis) + l.sum(axis))


RATES = {"win_rate": _win_rate, "win_rate_ties_as_wins": _ties_as_wins}


def summarize(outcomes: Sequence[str | None], resampling: Resampling = Resampling()) -> dict:
    """Counts and both win rates with intervals for one objective and comparison.

    `outcomes` has one entry per item ("win"/"tie"/"loss"/"invalid", or None where the
    comparison does not apply, e.g. no golden response). Invalid and None count in no rate.
    Win rate excludes ties (the paper); "ties as wins" is the released scoring code's convention.
    """
    flags = _flags(outcomes)
    wins, ties, losses = (int(f.sum()) for f in flags)
    out = {
        "n": wins + ties + losses,
        "wins": wins,
        "ties": ties,
        "losses": losses,
        "invalid": sum(o == "invalid" for o in outcomes),
    }
    for name, rate in RATES.items():
        out[name], out[name + "_ci"] = _num(rate(*flags)), interval(rate, flags, resampling)
    return out


def gain(aligned: Sequence[str | None], original: Sequence[str | None],
         resampling: Resampling = Resampling()) -> dict:
    """The paper's figure: win rate vs golden of aligned minus that of original, paired CI."""
    a, o = _flags(aligned), _flags(original)
    out = {}
    for name, rate in RATES.items():
        def difference(aw, at, al, ow, ot, ol, axis=-1, rate=rate):
            return rate(aw, at, al, axis) - rate(ow, ot, ol, axis)

        out[name] = _num(difference(*a, *o))
        out[name + "_ci"] = interval(difference, [*a, *o], resampling)
    return out


def mean_with_ci(values: Sequence[float | None], resampling: Resampling = Resampling()) -> dict:
    """Mean of the non-None values with a bootstrap interval (None entries are skipped)."""
    arr = np.array([np.nan if v is None else float(v) for v in values])
    present = np.isfinite(arr)

    def mean(x: np.ndarray, mask: np.ndarray, axis: int = -1) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(mask > 0, x, 0).sum(axis) / mask.sum(axis)

    return {"mean": _num(np.nanmean(arr)) if present.any() else None,
            "ci": interval(mean, [np.where(present, arr, 0.0), present], resampling),
            "n": int(present.sum())}


def harm_flags(per_objective: Mapping[str, Sequence[str | None]]) -> list[float | None]:
    """Per item: 1.0 if aligned loses to original on *every* objective, 0.0 if not, None if any
    objective's judgement is invalid or missing for that item."""
    columns = list(per_objective.values())
    flags: list[float | None] = []
    for row in zip(*columns):
        if any(o not in ("win", "tie", "loss") for o in row):
            flags.append(None)
        else:
            flags.append(float(all(o == "loss" for o in row)))
    return flags


def loss_flags(per_objective: Mapping[str, Sequence[str | None]]) -> list[float | None]:
    """Per item: 1.0 if aligned loses to original on *any* objective, 0.0 if on none, None if
    any judgement is invalid or missing."""
    flags: list[float | None] = []
    for row in zip(*per_objective.values()):
        if any(o not in ("win", "tie", "loss") for o in row):
            flags.append(None)
        else:
            flags.append(float(any(o == "loss" for o in row)))
    return flags


def edit_distance(a: str, b: str) -> float:
    """Word-level edit distance (difflib opcodes) over the longer length: 0 same, 1 rewritten."""
    wa, wb = a.split(), b.split()
    if not wa and not wb:
        return 0.0
    ops = SequenceMatcher(None, wa, wb, autojunk=False).get_opcodes()
    edits = sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in ops if tag != "equal")
    return edits / max(len(wa), len(wb))


def speed(latencies: Sequence[float], tokens: Sequence[int]) -> dict:
    """Latency per item (mean, median, p95, seconds) and tokens/s over all items."""
    if not latencies:
        return {"items": 0}
    lat = np.array(latencies, dtype=float)
    total = float(lat.sum())
    return {
        "items": len(lat),
        "latency_mean_s": float(lat.mean()),
        "latency_median_s": float(np.median(lat)),
        "latency_p95_s": float(np.percentile(lat, 95)),
        "tokens": int(sum(tokens)),
        "tokens_per_s": float(sum(tokens) / total) if total > 0 else None,
    }


def _num(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None
