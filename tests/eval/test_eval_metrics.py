"""Aggregation and interval maths on fixed judgements; both tie conventions."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.evaluate.metrics import (
    Resampling, edit_distance, gain, harm_flags, loss_flags, mean_with_ci, speed, summarize,
)

OUTCOMES = ["win", "win", "win", "tie", "tie", "loss", "invalid", None]


def test_counts_and_both_tie_conventions():
    r = summarize(OUTCOMES, Resampling(500, seed=1))
    assert (r["n"], r["wins"], r["ties"], r["losses"], r["invalid"]) == (6, 3, 2, 1, 1)
    assert r["win_rate"] == pytest.approx(3 / 4)  # ties excluded (paper)
    assert r["win_rate_ties_as_wins"] == pytest.approx(5 / 6)  # released code's convention
    for name in ("win_rate", "win_rate_ties_as_wins"):
        low, high = r[name + "_ci"]
        assert 0 <= low <= r[name] <= high <= 1


def test_intervals_are_seeded_and_degenerate_when_unanimous():
    a = summarize(OUTCOMES, Resampling(300, seed=7))
    b = summarize(OUTCOMES, Resampling(300, seed=7))
    assert a == b
    unanimous = summarize(["win"] * 5, Resampling(300))
    assert unanimous["win_rate"] == 1.0 and unanimous["win_rate_ci"] == [1.0, 1.0]


def test_all_ties_have_no_ties_excluded_rate():
    r = summarize(["tie", "tie", "invalid"], Resampling(100))
    assert r["win_rate"] is None and r["win_rate_ci"] == [None, None]
    assert r["win_rate_ties_as_wins"] == 1.0


def test_interval_matches_a_direct_bootstrap_from_the_seed():
    """scipy's resamples are `default_rng(seed).integers(0, n, (rounds, n))`: the same draws the
    hand-written bootstrap made, so reports keep their numbers for a seed."""
    outcomes = ["win"] * 6 + ["loss"] * 4
    idx = np.random.default_rng(3).integers(0, 10, size=(4000, 10))
    wins = (np.array([o == "win" for o in outcomes])[idx]).mean(axis=1)
    r = summarize(outcomes, Resampling(4000, seed=3))
    assert r["win_rate"] == pytest.approx(0.6)
    assert r["win_rate_ci"] == pytest.approx(list(np.percentile(wins, [2.5, 97.5])))


def test_resamples_without_a_decided_comparison_are_left_out():
    """A win rate is undefined in a resample that drew only ties: that resample is left out, where
    scipy's own interval would be nan."""
    outcomes = ["tie"] * 8 + ["win", "loss"]
    idx = np.random.default_rng(0).integers(0, 10, size=(2000, 10))
    w, l = (np.array([o == k for o in outcomes])[idx].sum(axis=1) for k in ("win", "loss"))
    rates = (w / np.where(w + l, w + l, 1))[w + l > 0]
    assert summarize(outcomes, Resampling(2000))["win_rate_ci"] == pytest.approx(
        list(np.percentile(rates, [2.5, 97.5])))
    assert summarize(["win"], Resampling(50))["win_rate_ci"] == [1.0, 1.0]  # one item


def test_gain_is_paired_difference_of_win_rates():
    aligned = ["win", "win", "loss", "tie", None]
    original = ["loss", "win", "loss", "loss", None]
    g = gain(aligned, original, Resampling(500))
    assert g["win_rate"] == pytest.approx(2 / 3 - 1 / 4)
    assert g["win_rate_ties_as_wins"] == pytest.approx(3 / 4 - 1 / 4)
    assert g["win_rate_ci"][0] <= g["win_rate"] <= g["win_rate_ci"][1]


def test_harm_means_losing_on_every_objective():
    flags = harm_flags({
        "harmlessness": ["loss", "loss", "win", "loss"],
        "humour": ["loss", "tie", "loss", "invalid"],
    })
    assert flags == [1.0, 0.0, 0.0, None]
    any_loss = loss_flags({"a": ["loss", "tie", "win"], "b": ["win", "tie", "invalid"]})
    assert any_loss == [1.0, 0.0, None]
    m = mean_with_ci(flags, Resampling(200))
    assert m["mean"] == pytest.approx(1 / 3) and m["n"] == 3


def test_edit_distance_is_word_level_and_normalized():
    assert edit_distance("a b c d", "a b c d") == 0.0
    assert edit_distance("a b c d", "a x c d") == pytest.approx(1 / 4)
    assert edit_distance("a b", "a b c d") == pytest.approx(2 / 4)
    assert edit_distance("one two", "three four five") == 1.0
    assert edit_distance("", "") == 0.0


def test_speed_figures():
    s = speed([1.0, 2.0, 3.0], [10, 20, 30])
    assert s["latency_mean_s"] == 2.0 and s["latency_median_s"] == 2.0
    assert s["tokens_per_s"] == pytest.approx(10.0)
