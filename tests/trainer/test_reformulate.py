"""Dataset adapters + Algorithm 1 on hand-written records in the real dataset shapes: exact rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metaaligner_chain.prompt import build_prompt
from trainer.config import DataConfig
from trainer.data.formats import load_groups
from trainer.data.reformulate import reformulate, summarize, write_splits

ROOT = Path(__file__).resolve().parents[2]


def config(fmt: str, **kw) -> DataConfig:
    return DataConfig(input="-", format=fmt, out="-", **{"val_fraction": 0.0, **kw})


def rows_of(records, fmt, **kw):
    cfg = config(fmt, **kw)
    splits = reformulate(load_groups("-", fmt, records=records), cfg)
    return {stage: [r.to_json() for r in rows] for stage, rows in splits["train"].items()}, splits


def uf_completion(response, instruction_following, honesty, truthfulness, helpfulness):
    ratings = dict(
        instruction_following=instruction_following, honesty=honesty,
        truthfulness=truthfulness, helpfulness=helpfulness,
    )
    return {
        "model": "m",
        "principle": "helpfulness",
        "response": response,
        "annotations": {k: {"Rating": v, "Rationale": "..."} for k, v in ratings.items()},
        "critique": "",
        "overall_score": 6.5,
    }


UF_RECORD = {
    "source": "evol_instruct",
    "instruction": "What is the capital of France?",
    "models": ["gpt-4", "alpaca-7b", "pythia-12b"],
    "completions": [
        uf_completion("The capital of France is Paris.", "5", "5", "5", "5"),
        uf_completion(" France is a country in Europe. ", "2", "5", "5", "2"),
        uf_completion("Lyon.", "4", "N/A", "1", "2"),  # "N/A" → the whole completion is dropped
    ],
}


def test_ultrafeedback_rows_na_dropped_ties_as_equal_row():
    rows, _ = rows_of([UF_RECORD], "ultrafeedback")
    q, a, b = UF_RECORD["instruction"], "The capital of France is Paris.", "France is a country in Europe."
    [pref] = rows["preference"]
    [equal] = rows["equal"]
    assert sorted(pref["objectives"]) == ["helpfulness", "instruction_following"]
    assert pref == {
        "prompt": build_prompt(q, b, pref["objectives"], prompt_format="ultrafeedback", mode="better"),
        "completion": a,
        "objectives": pref["objectives"],
        "mode": "better",
    }
    assert sorted(equal["objectives"]) == ["honesty", "truthfulness"]
    assert equal == {
        "prompt": build_prompt(q, b, equal["objectives"], prompt_format="ultrafeedback", mode="equal"),
        "completion": a,
        "objectives": equal["objectives"],
        "mode": "equal",
    }
    # warm-up: the one equal row copied with the input answer as target (identity)
    assert rows["warmup"] == [{**equal, "completion": b}]


def test_all_tied_pair_gives_only_an_equal_row_never_an_empty_objective_list():
    record = {
        "instruction": "Say hi.",
        "completions": [uf_completion("Hi!", "5", "5", "5", "5"), uf_completion("Hello!", "5", "5", "5", "5")],
    }
    rows, _ = rows_of([record], "ultrafeedback")
    assert rows["preference"] == []
    [equal] = rows["equal"]
    assert sorted(equal["objectives"]) == ["helpfulness", "honesty", "instruction_following", "truthfulness"]
    for stage_rows in rows.values():
        assert all(row["objectives"] for row in stage_rows)


HH_RECORD = {
    "chosen": "\n\nHuman: Tell me a joke about cats.\n\nAssistant: Why did the cat sit on the computer? "
    "To keep an eye on the mouse!",
    "rejected": "\n\nHuman: Tell me a joke about cats.\n\nAssistant: No.",
    "harmlessness_chosen": 0.2,
    "harmlessness_rejected": 0.3,
    "helpfulness_chosen": 0.8,
    "helpfulness_rejected": -1.0,
    "humour_chosen": 1.6,
    "humour_rejected": -1.2,
}


def test_hh_rlhf_both_directions_exact_rows():
    rows, _ = rows_of([HH_RECORD], "hh-rlhf")
    context = "\n\nHuman: Tell me a joke about cats. \n\nAssistant:"
    joke = "Why did the cat sit on the computer? To keep an eye on the mouse!"
    first, second = rows["preference"]
    assert sorted(first["objectives"]) == ["helpfulness", "humour"]
    assert first["prompt"] == build_prompt(context, "No.", first["objectives"], prompt_format="hh-rlhf")
    assert first["completion"] == joke
    # the rejected answer is more harmless: the reverse direction, written out in full
    assert second == {
        "prompt": "You are an assistant to human. You will be provided with a context and an answer. "
        "Consider the context, then edit the answer to improve it considering these aspects: "
        "Harmlessness: The response should avoid content that is offensive, discriminatory, or "
        "harmful | Context: \n\nHuman: Tell me a joke about cats. \n\nAssistant: | Answer: "
        f"{joke} | Edit: ",
        "completion": "No.",
        "objectives": ["harmlessness"],
        "mode": "better",
    }
    assert rows["equal"] == [] and rows["warmup"] == []


def test_hh_rlhf_tie_tolerance_makes_an_equal_row_with_only_the_tied_objective():
    rows, _ = rows_of([HH_RECORD], "hh-rlhf", tie_tolerance=0.15)
    [pref] = rows["preference"]
    assert sorted(pref["objectives"]) == ["helpfulness", "humour"]
    [equal] = rows["equal"]
    assert equal["objectives"] == ["harmlessness"]
    assert equal["mode"] == "equal"
    assert equal["prompt"].startswith(
        "You are an assistant to human. You will be provided with a context and an answer. "
        "Consider the context, then edit the answer to make it equal considering these aspects: "
        "Harmlessness:"
    )
    assert equal["prompt"].endswith("| Answer: No. | Edit: ")
    assert equal["completion"].startswith("Why did the cat")


def test_hh_rlhf_context_is_the_transcript_up_to_the_last_assistant_turn():
    record = {
        "chosen": "\n\nHuman: I feel sad today.\n\nAssistant: Why?\n\nHuman: My cat is ill."
        "\n\nAssistant: I am sorry to hear that.",
        "rejected": "\n\nHuman: I feel sad today.\n\nAssistant: Why?\n\nHuman: My cat is ill."
        "\n\nAssistant: Deal with it.",
        "harmlessness_chosen": 1.0,
        "harmlessness_rejected": -1.0,
    }
    [group] = load_groups("-", "hh-rlhf", records=[record])
    assert group.query == "\n\nHuman: I feel sad today.\n\nAssistant: Why?\n\nHuman: My cat is ill. \n\nAssistant:"
    assert [r.text for r in group.responses] == ["I am sorry to hear that.", "Deal with it."]


def test_helpsteer_pairs_responses_to_the_same_prompt_on_quality_attributes():
    records = [
        {"prompt": "Explain photosynthesis simply.", "response": "Plants use light to make sugar.",
         "helpfulness": 4, "correctness": 4, "coherence": 4, "complexity": 2, "verbosity": 2},
        {"prompt": "Other prompt", "response": "x", "helpfulness": 1, "correctness": 1,
         "coherence": 1, "complexity": 1, "verbosity": 1},
        {"prompt": "Explain photosynthesis simply.", "response": "Plants make sugar.",
         "helpfulness": 2, "correctness": 4, "coherence": 4, "complexity": 1, "verbosity": 0},
    ]
    rows, _ = rows_of(records, "helpsteer")
    [pref] = rows["preference"]
    assert pref["objectives"] == ["helpfulness"]  # complexity/verbosity are not objectives
    assert pref["completion"] == "Plants use light to make sugar."
    assert "| Answer: Plants make sugar. | Edit: " in pref["prompt"]
    [equal] = rows["equal"]
    assert sorted(equal["objectives"]) == ["coherence", "correctness"]
    assert "Coherence: the response should be consistent and clearly expressed" in equal["prompt"]
    assert "Correctness: the response should include all pertinent facts without errors" in equal["prompt"]


def test_helpsteer_under_imhi_reads_imhis_trained_correctness():
    """The one table of descriptions (`metaaligner_chain.objectives.describe`): a prompt format's
    trained wording of a key wins over the one written for HelpSteer."""
    records = [
        {"prompt": "Why?", "response": "Because.", "helpfulness": 2, "correctness": 4, "coherence": 4},
        {"prompt": "Why?", "response": "No idea.", "helpfulness": 2, "correctness": 1, "coherence": 4},
    ]
    rows, _ = rows_of(records, "helpsteer", prompt_format="imhi", objectives=("correctness", "coherence"))
    [pref] = rows["preference"]
    assert pref["objectives"] == ["correctness"]
    assert "Correctness: the explanations should make correct predictions" in pref["prompt"]


def test_generic_needs_descriptions_for_unknown_objectives():
    records = [{"query": "Reset my password?", "responses": [
        {"text": "Open Settings.", "scores": {"politeness": 1, "helpfulness": 1}},
        {"text": "No.", "scores": {"politeness": 0, "helpfulness": 0}},
    ]}]
    with pytest.raises(ValueError, match="'politeness'.*--descriptions politeness="):
        rows_of(records, "generic")
    rows, _ = rows_of(records, "generic", descriptions={"politeness": "Politeness: be kind"})
    [pref] = rows["preference"]
    assert sorted(pref["objectives"]) == ["helpfulness", "politeness"]
    assert "Politeness: be kind" in pref["prompt"]
    assert pref["completion"] == "Open Settings."


def test_a_plain_query_under_hh_rlhf_is_framed_as_the_runnable_serves_it():
    """Training prompts must be the prompts the runnable builds at inference, context included."""
    from metaaligner_chain import MetaAlignerRunnable
    from metaaligner_chain.coerce import coerce

    records = [{"query": "Reset my password?", "responses": [
        {"text": "Open Settings.", "scores": {"harmlessness": 1}},
        {"text": "No, figure it out.", "scores": {"harmlessness": 0}},
    ]}]
    rows, _ = rows_of(records, "generic", prompt_format="hh-rlhf")
    [pref] = rows["preference"]
    served = MetaAlignerRunnable(objectives=["harmlessness"], prompt_format="hh-rlhf")
    request = coerce({"query": "Reset my password?", "response": "No, figure it out."})
    assert pref["prompt"] == served._prompt(request, "hh-rlhf")
    assert "| Context: \n\nHuman: Reset my password? \n\nAssistant: | Answer: No, figure it out." in pref["prompt"]


def many_queries(n=12):
    return [
        {"query": f"Question {i}?", "responses": [
            {"text": f"Good answer {i}.", "scores": {"helpfulness": 2, "honesty": 1, "truthfulness": 1,
                                                  "instruction_following": 1}},
            {"text": f"Bad answer {i}.", "scores": {"helpfulness": 0, "honesty": 1, "truthfulness": 0,
                                                 "instruction_following": 0}},
        ]}
        for i in range(n)
    ]


def test_validation_split_is_by_query():
    cfg = config("generic", val_fraction=0.25)
    splits = reformulate(load_groups("-", "generic", records=many_queries()), cfg)

    def queries(split):
        return {r.prompt.split("| Query: ")[1].split(" | Answer:")[0] for rows in splits[split].values() for r in rows}

    train, val = queries("train"), queries("val")
    assert len(val) == 3 and len(train) == 9 and not train & val


def test_same_seed_same_files_and_objective_order_is_shuffled(tmp_path):
    records = many_queries()
    for name in ("a", "b"):
        cfg = DataConfig(input="-", format="generic", out=str(tmp_path / name), seed=7, val_fraction=0.25)
        splits = reformulate(load_groups("-", "generic", records=records), cfg)
        write_splits(splits, summarize(splits, cfg, len(records)), cfg.out)
    for name in ("warmup.jsonl", "equal.jsonl", "preference.jsonl", "val/preference.jsonl", "summary.json"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    orders = {tuple(r["objectives"]) for r in map(json.loads, (tmp_path / "a" / "preference.jsonl").open())}
    assert len(orders) > 1  # 3 objectives in a seeded random order per row


def test_warmup_fraction_samples_equal_rows_with_identity_targets():
    rows, _ = rows_of(many_queries(10), "generic", warmup_fraction=0.3)
    assert len(rows["equal"]) == 10 and len(rows["warmup"]) == 3
    equal_prompts = {r["prompt"] for r in rows["equal"]}
    for row in rows["warmup"]:
        assert row["prompt"] in equal_prompts
        answer = row["prompt"].split("| Answer: ")[1].split(" | Edit: ")[0]
        assert row["completion"] == answer and row["mode"] == "equal"


def test_summary_counts_per_file_and_objective():
    _, splits = rows_of([UF_RECORD], "ultrafeedback")
    summary = summarize(splits, config("ultrafeedback"), 1)
    assert summary["prompt_format"] == "ultrafeedback"
    assert summary["files"]["preference.jsonl"] == {
        "rows": 1, "objectives": {"helpfulness": 1, "instruction_following": 1}
    }
    assert summary["files"]["equal.jsonl"]["objectives"] == {"honesty": 1, "truthfulness": 1}


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_local_files_of_every_kind_read_the_same(tmp_path, suffix):
    import pandas as pd

    from trainer.data.sources import read_records

    records = [json.loads(line) for line in (ROOT / "examples/data/helpsteer_tiny.jsonl").open()]
    path = tmp_path / f"helpsteer{suffix}"
    frame = pd.DataFrame(records)
    {".jsonl": lambda: frame.to_json(path, orient="records", lines=True),
     ".json": lambda: path.write_text(json.dumps(records)),
     ".csv": lambda: frame.to_csv(path, index=False),
     ".parquet": lambda: frame.to_parquet(path)}[suffix]()
    assert load_groups(str(path), "helpsteer") == load_groups("-", "helpsteer", records=records)
    assert len(read_records(str(path))) == 4


def test_a_missing_local_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="is not a readable file"):
        load_groups(str(tmp_path / "nope.jsonl"), "generic")


def test_warmup_fraction_one_warms_up_on_every_equal_row():
    rows, _ = rows_of([UF_RECORD], "ultrafeedback", warmup_fraction=1.0)
    assert rows["equal"] and len(rows["warmup"]) == len(rows["equal"])
    assert all(r["completion"] in r["prompt"] for r in rows["warmup"])  # the identity map
    with pytest.raises(ValueError):
        config("ultrafeedback", warmup_fraction=1.5)
