"""The rule examples/default_aligner/keep_margin.py chooses the default's margins per objective by."""

from __future__ import annotations

import sys

import pytest

from trainer.evaluate.rewrites import judge_item, offline_scorers


LONG = ("Soak the stamps in cool water for twenty minutes, then slide them off the paper. "
        "Honestly, as I said, soaking really is the main thing, as I said before, honestly.")
TRIM = "Soak the stamps in cool water for twenty minutes, then slide them off the paper."
JARGON = "Use a hygrometer-calibrated humidor at 45% RH for philatelic conservation."
PLAIN = "Keep the album somewhere dry, not in a damp basement or a hot attic."
WORSE = ("Per hygrometric conservation protocols, maintain equilibrium relative humidity via "
         "hygrometer-calibrated humidors for philatelic preservation.")
CLEAN = "A watermark is a pattern pressed into the paper; a black tray and good light show it."


@pytest.fixture
def keep_margin(example_script):
    yield example_script("keep_margin")
    sys.modules.pop("compare", None)  # imported by keep_margin as it runs


def judged_run(cases):
    """(rows by id, judged items as validate.py writes them, scored items with their gaps)."""
    rows, judged, scored = {}, [], []
    for i, (kind, objective, answer, gold, aligned, gap) in enumerate(cases):
        row = {"id": f"x{i}", "kind": kind, "query": "stamps?", "answer": answer, "rewrite": gold,
               "objectives": [objective], "fixes": [] if kind == "clean" else [objective]}
        rows[row["id"]] = row
        result = judge_item(row, aligned, offline_scorers())
        judged.append({"id": row["id"], "kind": kind, "answer": answer, "aligned": aligned,
                       "fallback_reason": None, **result})
        scored.append({"id": row["id"], "gap": gap})
    return rows, judged, scored


def test_each_objective_gets_the_margin_that_keeps_its_good_edits_and_gives_back_its_bad_ones(keep_margin):
    rows, judged, scored = judged_run([
        ("rewrite", "length", LONG, TRIM, TRIM, 0.4),            # a good trim, cheap for the model
        ("rewrite", "readability", JARGON, PLAIN, WORSE, 0.4),   # a bad cheap edit
        ("clean", "readability", CLEAN, CLEAN, "Watermarks: look.", 3.5),  # a clean answer edited
    ])
    judging = keep_margin.Judged(judged, rows, scored)
    margins, steps = keep_margin.per_objective(judging)
    assert margins["length"] == 0.0  # the trim stands (and a tie takes the smallest margin)
    assert margins["readability"] == 5.0  # the smallest on the grid above both of its gaps
    assert margins["*"] == 0.0 and steps[-1]["score"] == keep_margin.score(
        judging.split(lambda row: min(margins[k] for k in row["objectives"])), clean=1)
    split = judging.split(lambda row: min(margins[k] for k in row["objectives"]))
    assert split["changed"] == 1 and split["clean_kept"] == 1 and split["chrf"][0] == 1
