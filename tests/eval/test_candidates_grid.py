"""The offline choices examples/default_aligner/candidates.py's grid makes from a run's outputs
(every candidate's text and which fell back, read back from the output's metadata)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

ANSWER = "Boil the eggs for ten minutes, then cool them in cold water before peeling them."
SHARED = "Boil the eggs for ten minutes. Then cool them in cold water before you peel them."
SHARED_TOO = "Boil the eggs for ten minutes, then cool them in cold water before you peel them."
TURNED_DOWN = "Boil eggs."


@pytest.fixture
def candidates(example_script):
    return example_script("candidates")


def _record(chosen_text: str, index: int, others: list[str], fell_back: list[dict]) -> dict:
    return {"id": "x", "aligned": chosen_text, "metadata": {
        "chosen": [index, len(others) + 1], "candidates": others, "fell_back": fell_back,
        "fallback_reason": None}}


ITEM = SimpleNamespace(row={"id": "x", "answer": ANSWER})
# candidate 0 and 2 fell back (their text is the answer's); 1 and 3 share a change
RECORD = _record(ANSWER, 0, [SHARED, ANSWER, SHARED_TOO],
                 [{"candidate": 0, "rejected": TURNED_DOWN}, {"candidate": 2, "rejected": None}])


def test_the_candidates_are_read_back_in_order_with_the_chosen_one_in_its_place(candidates):
    assert candidates.written(RECORD) == [ANSWER, SHARED, ANSWER, SHARED_TOO]
    assert candidates.written({"metadata": {}}) is None  # no model call, or aligned in parts


def test_fallbacks_vote_as_the_answer_unless_left_out(candidates):
    voting = candidates.chooser(3)(ITEM, RECORD)
    assert voting["aligned"] == ANSWER and voting["metadata"]["fallback_reason"] == "fell back"
    left_out = candidates.chooser(3, mode="fallbacks left out")(ITEM, RECORD)
    assert left_out["aligned"] in (SHARED, SHARED_TOO)
    assert left_out["metadata"]["fallback_reason"] is None
    assert candidates.chooser(1)(ITEM, RECORD)["aligned"] in (ANSWER, SHARED)  # the first two only


def test_a_turned_down_rewrite_votes_in_its_candidates_place(candidates):
    record = _record(ANSWER, 0, [ANSWER], [{"candidate": 0, "rejected": SHARED_TOO},
                                           {"candidate": 1, "rejected": None}])
    assert candidates.chooser(1, mode="fallbacks left out")(ITEM, record)["aligned"] == ANSWER
    mode = "turned-down rewrites vote, fallbacks left out"  # candidate 1 recorded none: left out
    assert candidates.chooser(1, mode=mode)(ITEM, record)["aligned"] == SHARED_TOO


def test_the_original_back_when_the_candidates_disagree_or_agree_with_it_more(candidates):
    record = _record(SHARED, 0, [SHARED_TOO, SHARED], [])
    assert candidates.chooser(2)(ITEM, record)["aligned"] == SHARED
    assert candidates.chooser(2, consensus=100.0)(ITEM, record)["aligned"] == ANSWER  # too sure
    assert candidates.chooser(2, consensus=50.0)(ITEM, record)["aligned"] == SHARED
    assert candidates.chooser(2, original_margin=100.0)(ITEM, record)["aligned"] == SHARED


def test_a_second_run_extends_the_first_ones_candidates(candidates):
    # the second run wrote the same greedy rewrite (dropped) and samples 4 and 5; its sample 5
    # fell back, and so it is candidate 5 of the joined record
    more = _record(ANSWER, 0, [SHARED_TOO, ANSWER], [{"candidate": 0, "rejected": TURNED_DOWN},
                                                     {"candidate": 2, "rejected": None}])
    record = candidates.joined(RECORD, more)
    assert candidates.written(record) == [ANSWER, SHARED, ANSWER, SHARED_TOO, SHARED_TOO, ANSWER]
    assert [entry["candidate"] for entry in record["metadata"]["fell_back"]] == [0, 2, 5]
    # the greedy rewrite and samples 4 and 5 only: the two that fell back outvote SHARED_TOO
    assert candidates.chooser(3, samples=(4, 5))(ITEM, record)["aligned"] == ANSWER
    assert candidates.chooser(3, samples=(3, 4))(ITEM, record)["aligned"] == SHARED_TOO
    assert candidates.chooser(5, mode="fallbacks left out")(ITEM, record)["aligned"] != ANSWER
    with pytest.raises(ValueError, match="greedy rewrites differ"):
        candidates.joined(RECORD, _record(SHARED, 0, [SHARED_TOO], []))
