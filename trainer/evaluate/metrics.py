"""Figures from judgements: win/tie/loss, win rates under both tie conventions, harm, edits, speed.

Pure numpy over fixed inputs. Confidence intervals are percentile bootstraps over items (seeded);
every comparison of one run resamples the *same* items, so differences (gains) are paired.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from difflib import SequenceMatcher

import numpy as np

CI_LEVEL = 0.95


def resample_indices(n: int, rounds: int = 2000, seed: int = 0) -> np.ndarray:
    """A (rounds, n) matrix of item indices drawn with replacement, fixed by `seed`."""
    return np.random.default_rng(seed).integers(0, n, size=(rounds, n))


def _ci(samples: np.ndarray) -> list[float | None]:
    tail = (1 - CI_LEVEL) / 2 * 100
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return [None, None]
    return [float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail))]


def _rates(w: np.ndarray, t: np.ndarray, l: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ties excluded, ties as wins); nan where the denominator is 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return w / (w + l), (w + t) / (w + t + l)


def _counts(outcomes: Sequence[str | None], idx: np.ndarray) -> dict[str, tuple]:
    """Per outcome kind: (total count, count in each bootstrap round)."""
    arr = np.array([o or "" for o in outcomes], dtype=object)
    out = {}
    for kind in ("win", "tie", "loss"):
        flags = (arr == kind).astype(float)
        out[kind] = (flags.sum(), flags[idx].sum(axis=1))
    return out


def _rate_samples(outcomes: Sequence[str | None], idx: np.ndarray) -> dict[str, tuple]:
    """Per convention: (point estimate, bootstrap samples)."""
    c = _counts(outcomes, idx)
    point = _rates(*(np.array(c[k][0]) for k in ("win", "tie", "loss")))
    boot = _rates(*(c[k][1] for k in ("win", "tie", "loss")))
    return {
        "win_rate": (point[0], boot[0]),
        "win_rate_ties_as_wins": (point[1], boot[1]),
    }


def summarize(outcomes: Sequence[str | None], idx: np.ndarray) -> dict:
    """Counts and both win rates with intervals for one objective and comparison.

    `outcomes` has one entry per item ("win"/"tie"/"loss"/"invalid", or None where the
    comparison does not apply, e.g. no golden response). Invalid and None count in no rate.
    Win rate excludes ties (the paper); "ties as wins" is the released scoring code's convention.
    """
    c = _counts(outcomes, idx)
    wins, ties, losses = (int(c[k][0]) for k in ("win", "tie", "loss"))
    out = {
        "n": wins + ties + losses,
        "wins": wins,
        "ties": ties,
        "losses": losses,
        "invalid": sum(o == "invalid" for o in outcomes),
    }
    for name, (point, boot) in _rate_samples(outcomes, idx).items():
        out[name], out[name + "_ci"] = _num(point), _ci(boot)
    return out


def gain(
    aligned: Sequence[str | None], original: Sequence[str | None], idx: np.ndarray
) -> dict:
    """The paper's figure: win rate vs golden of aligned minus that of original, paired CI."""
    a, o = _rate_samples(aligned, idx), _rate_samples(original, idx)
    out = {}
    for name in a:
        out[name] = _num(a[name][0] - o[name][0])
        out[name + "_ci"] = _ci(a[name][1] - o[name][1])
    return out


def mean_with_ci(values: Sequence[float | None], idx: np.ndarray) -> dict:
    """Mean of the non-None values with a bootstrap interval (None entries are skipped)."""
    arr = np.array([np.nan if v is None else float(v) for v in values])
    with np.errstate(invalid="ignore"):
        mask = np.isfinite(arr)
        boot = np.nansum(np.where(mask, arr, 0)[idx], axis=1) / mask[idx].sum(axis=1)
    return {"mean": _num(np.nanmean(arr)) if mask.any() else None, "ci": _ci(boot),
            "n": int(mask.sum())}


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
