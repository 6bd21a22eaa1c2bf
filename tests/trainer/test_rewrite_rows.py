"""The generic format's rewrite and clean rows, earlier turns, and the orientation of every pair."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from metaaligner_chain.objectives import resolve
from metaaligner_chain.prompt import build_prompt
from trainer.config import DataConfig
from trainer.data.formats import load_groups
from trainer.data.reformulate import reformulate

HH = "hh-rlhf"


def rows_of(records, **kw):
    cfg = DataConfig(input="-", format="generic", out="-", prompt_format=HH,
                     **{"val_fraction": 0.0, "warmup_fraction": 0.0, **kw})
    splits = reformulate(load_groups("-", "generic", records=records), cfg)
    return {stage: [r.to_json() for r in rows] for stage, rows in splits["train"].items()}


def prompt(query_context, answer, keys, mode="better"):
    return build_prompt(query_context, answer, resolve(keys, HH), prompt_format=HH, mode=mode)


def test_a_rewrite_gives_one_better_row_from_the_answer_to_the_rewrite():
    record = {"query": "Boil an egg?", "answer": "Just figure it out, genius.",
              "objectives": ["harmlessness"], "rewrite": "Boil it for 8 minutes, then cool it in water."}
    rows = rows_of([record])
    assert rows["equal"] == [] and rows["warmup"] == []
    assert rows["preference"] == [{
        "prompt": prompt("\n\nHuman: Boil an egg? \n\nAssistant:", record["answer"], ["harmlessness"]),
        "completion": record["rewrite"], "objectives": ["harmlessness"], "mode": "better",
    }]


def test_a_clean_answer_is_kept_as_it_is_under_better():
    record = {"query": "Capital of Japan?", "answer": "Tokyo.", "objectives": ["factuality", "length"],
              "rewrite": "Tokyo."}
    [row] = rows_of([record])["preference"]
    assert row["completion"] == "Tokyo." and row["mode"] == "better"
    assert sorted(row["objectives"]) == ["factuality", "length"]
    assert "| Answer: Tokyo. | Edit: " in row["prompt"]


def test_earlier_turns_frame_the_context_as_the_runnable_serves_them():
    from langchain_core.messages import AIMessage, HumanMessage

    from metaaligner_chain import MetaAlignerRunnable
    from metaaligner_chain.coerce import coerce

    record = {"query": "And for two people?", "context": [["human", "A pasta recipe?"],
                                                          ["assistant", "Boil 100 g per person."]],
              "answer": "Ugh, do the maths yourself.", "objectives": ["harmlessness"],
              "rewrite": "Use about 200 g for two people."}
    [row] = rows_of([record])["preference"]
    served = MetaAlignerRunnable(objectives=["harmlessness"], prompt_format=HH)
    request = coerce({"query": "And for two people?", "response": record["answer"],
                      "chat_history": [HumanMessage("A pasta recipe?"), AIMessage("Boil 100 g per person.")]})
    assert row["prompt"] == served._prompt(request, HH)
    assert "Boil 100 g per person.\n\nHuman: And for two people? \n\nAssistant: | Answer:" in row["prompt"]


def test_every_target_is_no_worse_than_its_source_even_when_listed_worse_first():
    chain = {"query": "Fix a flat tyre?", "responses": [
        {"text": "Whatever.", "scores": {"helpfulness": 1, "harmlessness": 3}},
        {"text": "Patch the tube.", "scores": {"helpfulness": 3, "harmlessness": 3}},
        {"text": "Remove the wheel, find the hole, patch the tube, refit.",
         "scores": {"helpfulness": 5, "harmlessness": 3}},
    ]}
    rows = rows_of([chain])
    rank = {r["text"]: r["scores"]["helpfulness"] for r in chain["responses"]}
    source_of = {row["prompt"].split("| Answer: ")[1].split(" | Edit: ")[0]: row for row in rows["equal"]}
    assert len(rows["equal"]) == 3 and len(rows["preference"]) == 3
    for row in rows["equal"] + rows["preference"]:
        source = row["prompt"].split("| Answer: ")[1].split(" | Edit: ")[0]
        assert rank[row["completion"]] > rank[source], (source, row["completion"])
    assert set(source_of) == {"Whatever.", "Patch the tube."}


def test_a_trade_off_pair_targets_the_higher_total_in_its_equal_row():
    chain = {"query": "Explain tides.", "responses": [
        {"text": "The Moon's pull raises the sea on both sides of Earth, twice a day, roughly.",
         "scores": {"length": 2, "factuality": 5, "readability": 4}},
        {"text": "The Sun does it.", "scores": {"length": 5, "factuality": 1, "readability": 4}},
    ]}
    [equal] = rows_of([chain])["equal"]
    assert equal["objectives"] == ["readability"]
    assert equal["completion"].startswith("The Moon's pull")


@pytest.mark.parametrize("record, message", [
    ({"query": "q", "answer": "a"}, "row 1: the generic row has neither `responses`"),
    ({"query": "q", "answer": "a", "objectives": [], "rewrite": "b"}, "row 1: `objectives` is []"),
    ({"query": "q", "answer": "a", "objectives": ["length"], "rewrite": "b", "context": [["bot", "x"]]},
     "row 1: `context` has the turn ['bot', 'x']"),
])
def test_malformed_rows_are_named(record, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_groups("-", "generic", records=[record])


def _aspects(row):
    return row["prompt"].split("these aspects: ")[1].split(" | Context")[0]


def _records(count):
    return [{"query": f"Question {i}?", "answer": f"Ugh, answer {i}, genius.",
             "objectives": ["harmlessness", "length"], "rewrite": f"Answer {i}."} for i in range(count)]


@pytest.fixture
def wordings(tmp_path):
    path = tmp_path / "paraphrases.json"
    path.write_text(json.dumps({"harmlessness": ["Safety: the answer must not hurt anyone",
                                                 "Non-toxicity: no insults"],
                                "length": ["Brevity: keep it short"]}))
    return str(path)


def test_paraphrases_reword_a_share_of_the_training_queries_and_leave_the_rest_as_they_were(wordings):
    plain = rows_of(_records(60))["preference"]
    mixed = rows_of(_records(60), paraphrases=wordings, paraphrase_fraction=0.5)["preference"]
    catalogue = _aspects(plain[0]).split("; ")
    reworded = [row for row in mixed if _aspects(row) not in {"; ".join(catalogue), "; ".join(catalogue[::-1])}]
    assert 15 <= len(reworded) <= 45  # about half of 60, seeded
    for row in reworded:  # every objective of a reworded row takes one of its other wordings
        assert set(_aspects(row).split("; ")) <= {"Safety: the answer must not hurt anyone",
                                                  "Non-toxicity: no insults", "Brevity: keep it short"}
        assert sorted(row["objectives"]) == ["harmlessness", "length"]  # still counted by key
    # The rest, and every completion and objective order, are those of the build without them.
    assert [(r["completion"], r["objectives"]) for r in mixed] == [(r["completion"], r["objectives"]) for r in plain]
    assert all(m == p for m, p in zip(mixed, plain) if m not in reworded)


def test_validation_rows_keep_the_catalogues_wording(wordings):
    cfg = DataConfig(input="-", format="generic", out="-", prompt_format=HH, val_fraction=0.5,
                     warmup_fraction=0.0, paraphrases=wordings, paraphrase_fraction=1.0)
    splits = reformulate(load_groups("-", "generic", records=_records(20)), cfg)
    assert splits["val"]["preference"] and splits["train"]["preference"]
    assert all("Harmlessness: The response should avoid" in r.prompt for r in splits["val"]["preference"])
    assert not any("Harmlessness: The response should avoid" in r.prompt for r in splits["train"]["preference"])


@pytest.mark.parametrize("content, message", [
    ({"fairness": ["Fairness: both sides"]}, "rewords 'fairness', which this build does not train"),
    ({"length": []}, "'length' must be a non-empty list"),
    ({"length": ["just short"]}, "is not 'Name: description'"),
    (["Brevity: short"], "holds a list; it must map objective keys"),
])
def test_a_bad_paraphrases_file_is_named_with_the_fix(tmp_path, content, message):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=re.escape(message)):
        rows_of(_records(2), paraphrases=str(path), paraphrase_fraction=0.5)


def test_a_paraphrase_fraction_without_a_file_is_an_error():
    with pytest.raises(ValueError, match="`paraphrase_fraction` 0.5 needs `paraphrases`"):
        rows_of(_records(2), paraphrase_fraction=0.5)


def test_the_paraphrases_file_is_part_of_a_builds_fingerprint(tmp_path, wordings):
    from trainer.data.fingerprint import changes, fingerprint

    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in _records(3)) + "\n")
    cfg = DataConfig(input=str(data), format="generic", out="-", paraphrases=wordings,
                     paraphrase_fraction=0.5)
    before = fingerprint(cfg)
    Path(wordings).write_text(json.dumps({"length": ["Brevity: shorter"]}))
    assert changes(before, fingerprint(cfg)) == ["paraphrases:paraphrases.json changed"]
