"""The DPO pairs examples/default_aligner/preference.py builds from the recipe's training rows."""

from __future__ import annotations

import json

import pytest

from metaaligner_chain.prompt import build_prompt

QUERY = "\n\nHuman: How do I keep cut tulips upright? \n\nAssistant:"
FLAWED = "Tulips droop. Nothing to be done, flowers are like that."
FIXED = "Trim the stems, wrap the bunch in paper for a few hours, and keep the vase cool."
CLEAN = "Recut the stems at an angle and use cold water; a pin through the stem does not help."


@pytest.fixture
def preference(example_script):
    return example_script("preference")


def _row(answer: str, completion: str, objectives: list[str]) -> dict:
    prompt = build_prompt(QUERY, answer, objectives, prompt_format="hh-rlhf")
    return {"prompt": prompt, "completion": completion, "objectives": objectives, "mode": "better"}


def test_the_answer_is_read_back_from_the_prompt_the_aligner_sees(preference):
    answer = "Line one | with a bar.\nLine two."
    assert preference.answer_of(_row(answer, answer, ["helpfulness"])["prompt"]) == answer


def test_rows_split_into_flawed_and_clean_and_pairs_prefer_the_target(preference, tmp_path):
    rows = [_row(FLAWED, FIXED, ["helpfulness"]), _row(CLEAN, CLEAN, ["helpfulness", "length"]),
            _row(CLEAN + " ", CLEAN + " ", ["factuality"])]
    (tmp_path / "preference.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    flawed, clean = preference.training_rows(tmp_path)
    assert [r["completion"] for r in flawed] == [FIXED]
    assert len(clean) == 2
    # the default edits the first clean answer and gives the second back unchanged
    edits = {clean[0]["prompt"]: CLEAN.replace("cold", "warm"), clean[1]["prompt"]: CLEAN}
    pairs = preference.pairs_from(flawed, clean, edits)
    assert [(p["kind"], p["chosen"], p["rejected"]) for p in pairs] == [
        ("flawed", FIXED, FLAWED), ("clean", CLEAN, CLEAN.replace("cold", "warm"))]


def test_cached_edits_are_reused_without_loading_a_model(preference, tmp_path):
    row = _row(CLEAN, CLEAN, ["helpfulness"])
    cache = tmp_path / "clean-edits.jsonl"
    cache.write_text(json.dumps({"prompt": row["prompt"], "output": "cached"}) + "\n")
    assert preference.clean_edits([row], cache, max_new_tokens=8) == {row["prompt"]: "cached"}


def test_a_clean_answer_given_back_is_sampled_until_an_edit_differs(preference, tmp_path):
    row = _row(CLEAN, CLEAN, ["helpfulness"])
    cache = tmp_path / "clean-edits.jsonl"
    cached = [(None, CLEAN), (1, CLEAN + " "), (2, "sampled edit"), (3, "never reached"), (2, "another sampler")]
    sampler = [{}] + [{"temperature": 0.7, "top_p": 0.9}] * 3 + [{"temperature": 1.0, "top_p": 1.0}]
    cache.write_text("".join(json.dumps({"prompt": row["prompt"], "seed": seed, **how, "output": text})
                             + "\n" for (seed, text), how in zip(cached, sampler)))
    edits = preference.clean_edits([row], cache, max_new_tokens=8, samples=3, temperature=0.7, top_p=0.9)
    assert edits == {row["prompt"]: "sampled edit"}
    # without samples the greedy copy stands (no pair is made from it)
    assert preference.clean_edits([row], cache, max_new_tokens=8) == {row["prompt"]: CLEAN}
