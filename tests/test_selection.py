"""Choosing among several rewrites (`candidates` > 1): minimum Bayes risk with chrF."""

from __future__ import annotations

import json
import sys

import pytest

from metaaligner_chain import MetaAlignerRunnable, batching, selection
from metaaligner_chain.backends.base import AlignerConfigError
from metaaligner_chain.gate import Verdict
from metaaligner_chain.models.defaults import ADAPTER_METADATA

ORIGINAL = "Boil the eggs for ten minutes, then cool them in cold water before peeling them."
SHARED = "Boil the eggs for ten minutes. Then cool them in cold water before you peel them."
SHARED_TOO = "Boil the eggs for ten minutes, then cool them in cold water before you peel them."
ODD = "Eggs are a good source of protein, and many people enjoy them at breakfast every day."


def aligned(text: str) -> Verdict:
    return Verdict(text=text, aligned=True)


def test_a_rewrite_only_one_draw_made_loses_to_the_one_the_others_share_even_when_it_came_first():
    chosen = selection.choose(ORIGINAL, [aligned(ODD), aligned(SHARED), aligned(SHARED_TOO)])
    assert chosen.text in (SHARED, SHARED_TOO)
    assert chosen.chosen[1] == 3 and chosen.text != ODD
    assert ODD in chosen.candidates and len(chosen.candidates) == 2


def test_one_verdict_comes_back_as_it_is():
    only = aligned(ODD)
    assert selection.choose(ORIGINAL, [only]) is only


def test_the_first_of_equals_wins():
    chosen = selection.choose(ORIGINAL, [aligned(SHARED), aligned(SHARED), aligned(SHARED)])
    assert chosen.chosen == (0, 3)


def test_the_original_is_a_reference_so_it_breaks_a_split_between_rewrites():
    near = SHARED_TOO
    far = "Boil the eggs for ten minutes. " + ODD  # holds more of `near` than `near` holds of it
    assert selection.similarity(far, near) > selection.similarity(near, far)  # chrF is not symmetric
    alone = selection.choose(ORIGINAL, [aligned(near), aligned(far)], original_weight=0.0)
    assert alone.text == far  # between two rewrites alone, the one the other supports more
    assert selection.choose(ORIGINAL, [aligned(near), aligned(far)], original_weight=0.5).text == near


def test_a_fallback_counts_as_the_original_and_may_win():
    fallback = Verdict(text=ORIGINAL, aligned=False, fallback_reason="a loop")
    chosen = selection.choose(ORIGINAL, [aligned(ODD), fallback, aligned(SHARED_TOO)])
    assert chosen is not None and chosen.text in (ORIGINAL, SHARED_TOO)


def test_fallbacks_left_out_neither_vote_nor_win_unless_every_candidate_fell_back():
    fallback = Verdict(text=ORIGINAL, aligned=False, fallback_reason="a loop")
    rewrites = [fallback, aligned(SHARED), fallback, aligned(ODD), fallback]
    voting = selection.choose(ORIGINAL, rewrites)  # three copies of the original outvote the rest
    assert voting.text == ORIGINAL and voting.fallback_reason
    assert voting.fell_back == ((0, None), (2, None), (4, None))
    left_out = selection.choose(ORIGINAL, [*rewrites, aligned(SHARED_TOO)], fallbacks_vote=False)
    assert left_out.text == SHARED_TOO and left_out.chosen == (5, 6)
    assert left_out.fell_back == voting.fell_back
    assert list(left_out.candidates) == [ORIGINAL, SHARED, ORIGINAL, ODD, ORIGINAL]
    cut = Verdict(text=ORIGINAL, aligned=False, fallback_reason="too short", rejected="Boil them.")
    assert selection.choose(ORIGINAL, [cut, aligned(SHARED)]).fell_back == ((0, "Boil them."),)
    every = selection.choose(ORIGINAL, [fallback, fallback], fallbacks_vote=False)
    assert every.text == ORIGINAL and every.chosen == (0, 2) and every.fallback_reason == "a loop"


def test_the_original_as_a_candidate_is_given_back_with_the_reason_and_the_rewrite_kept():
    rewrites = [aligned(ODD), aligned("Peeling eggs is easier under running water after boiling.")]
    chosen = selection.choose(ORIGINAL, rewrites, original_weight=1.0, original_candidate=True)
    assert chosen.text == ORIGINAL and chosen.chosen == (2, 2)
    assert chosen.rejected == ODD and "agree more with the original" in chosen.kept
    assert list(chosen.candidates) == [v.text for v in rewrites]


def test_the_original_goes_out_when_the_rewrites_agree_with_it_more_than_with_the_chosen_one():
    # each rewrite makes its own small edit: each is closer to the original than to the others
    rewrites = [aligned(ORIGINAL + " Salt helps."), aligned("Always b" + ORIGINAL[1:]),
                aligned(ORIGINAL.replace("cold water", "icy water").replace("them.", "them carefully."))]
    chosen = selection.choose(ORIGINAL, rewrites)
    assert chosen.text == rewrites[0].text and selection.choose(ORIGINAL, rewrites, original_margin=5.0) == chosen
    given_back = selection.choose(ORIGINAL, rewrites, original_margin=0.0)  # 87.0 against 84.4
    assert given_back.text == ORIGINAL and given_back.chosen == (3, 3) and given_back.rejected == chosen.text
    assert "original_margin=0.0" in given_back.kept and len(given_back.candidates) == 3
    shared = [aligned(SHARED_TOO), aligned(SHARED), aligned(SHARED_TOO)]  # a change they share
    assert selection.choose(ORIGINAL, shared, original_margin=0.0).text == SHARED_TOO


def test_candidates_are_sampled_with_a_seed_of_their_own_per_prompt_and_repeatable():
    aligner = MetaAlignerRunnable(objectives=["readability"], candidates=3, seed=10)
    first = aligner.candidate_settings(1, "prompt a")
    assert (first.temperature, first.top_p) == (0.7, 0.9) and not first.greedy and aligner.settings().greedy
    seeds = {aligner.candidate_settings(i, p).seed for i in (1, 2) for p in ("prompt a", "prompt b")}
    assert len(seeds) == 4 and first == aligner.candidate_settings(1, "prompt a")
    assert aligner.model_copy(update={"seed": 11}).candidate_settings(1, "prompt a").seed != first.seed
    with pytest.raises(ValueError, match="candidates"):
        MetaAlignerRunnable(objectives=["readability"], candidates=0)


def test_one_engine_call_for_prompts_sampled_with_seeds_of_their_own_gets_one_seed_from_all():
    aligner = MetaAlignerRunnable(objectives=["readability"], candidates=3)
    own = [aligner.candidate_settings(1, p) for p in ("a", "b")]
    batched = batching.batch_settings(own)
    assert batched.seed not in (own[0].seed, own[1].seed) and batched == batching.batch_settings(own)
    assert batching.batch_settings([aligner.settings()] * 2) == aligner.settings()


def test_without_sacrebleu_the_error_says_what_to_install(monkeypatch):
    selection._chrf.cache_clear()
    monkeypatch.setitem(sys.modules, "sacrebleu.metrics", None)
    try:
        with pytest.raises(AlignerConfigError, match=r"sacrebleu.*candidates=1"):
            selection.choose(ORIGINAL, [aligned(ODD), aligned(SHARED)])
    finally:
        selection._chrf.cache_clear()


def test_auto_is_the_count_the_model_records_and_the_recorded_margins_apply_only_to_one(tiny_model_dir):
    recorded = json.loads(ADAPTER_METADATA.read_text())
    default = MetaAlignerRunnable(objectives=["humour"])
    assert default.resolved_candidates() == recorded.get("candidates", 1)
    one = default.model_copy(update={"candidates": 1})
    assert one.resolved_keep_margin() == recorded["keep_margin"]
    assert default.resolved_keep_margin() == (None if default.resolved_candidates() > 1 else recorded["keep_margin"])
    assert default.model_copy(update={"keep_margin": 3.0}).resolved_keep_margin() == 3.0  # given: used
    assert MetaAlignerRunnable(objectives=["humour"], model=str(tiny_model_dir)).resolved_candidates() == 1


def test_original_margin_auto_is_what_the_model_records_and_a_given_one_is_used(tiny_model_dir):
    recorded = json.loads(ADAPTER_METADATA.read_text())
    default = MetaAlignerRunnable(objectives=["humour"])
    assert default.resolved_original_margin() == recorded.get("original_margin")
    assert default.model_copy(update={"original_margin": None}).resolved_original_margin() is None
    assert default.model_copy(update={"original_margin": 3}).resolved_original_margin() == 3.0
    assert MetaAlignerRunnable(objectives=["humour"], model=str(tiny_model_dir)).resolved_original_margin() is None
    with pytest.raises(ValueError, match="original_margin"):
        MetaAlignerRunnable(objectives=["humour"], original_margin=-1.0)

