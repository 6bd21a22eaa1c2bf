"""The written corpus loader: line-numbered errors, item checks, statistics, held-out judging."""

from __future__ import annotations

import json

import pytest

from trainer.data.corpus import Item, check, checks_passed, distinct_ngrams, load, nearest, openings, read_jsonl
from trainer.evaluate.rewrites import judge_item, summarize

TRAINED = ("harmlessness", "helpfulness", "factuality", "readability", "length", "humour")


def write(tmp_path, rows, name="part.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


REWRITE = {"id": "x-1", "kind": "rewrite", "query": "Capital of Australia?",
           "answer": "Sydney, obviously, you dolt.", "objectives": ["factuality", "harmlessness"],
           "fixes": ["factuality", "harmlessness"], "flaws": ["wrong_fact", "insult"],
           "rewrite": "The capital of Australia is Canberra.",
           "checks": {"must_drop": ["you dolt"], "must_keep": ["Canberra"]}}


def test_bad_json_names_file_and_line(tmp_path):
    path = write(tmp_path, [REWRITE, "", '{"id": "x-2", "kind": '])
    with pytest.raises(ValueError, match=r"part.jsonl:3: not JSON"):
        read_jsonl(path)


def test_non_utf8_names_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(json.dumps(REWRITE).encode() + b"\n" + b'{"q": "caf\xe9"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not UTF-8"):
        read_jsonl(path)


@pytest.mark.parametrize("change, message", [
    ({"kind": "other"}, "`kind` is 'other'"),
    ({"fixes": ["length"]}, "`fixes` ['length'] are not all in `objectives`"),
    ({"objectives": ["empathy"], "fixes": ["empathy"]}, "objective(s) ['empathy'] are not among"),
    ({"rewrite": "Sydney, obviously, you dolt."}, "a rewrite item has a `rewrite` that differs"),
    ({"checks": {"must_drop": ["not there"], "must_keep": []}}, "must_drop 'not there' must be in `answer`"),
    ({"checks": {"must_drop": [], "must_keep": ["Perth"]}}, "must_keep 'Perth' is not in `rewrite`"),
])
def test_each_rule_names_place_field_and_value(change, message):
    problems = check(Item({**REWRITE, **change}, "f.jsonl:7"), TRAINED)
    assert any(p.startswith("f.jsonl:7: ") and message in p for p in problems), problems


def test_clean_and_chain_items_and_duplicate_ids(tmp_path):
    clean = {**REWRITE, "id": "x-2", "kind": "clean", "fixes": [], "rewrite": REWRITE["answer"],
             "checks": None}
    chain = {"id": "x-1", "kind": "chain", "query": "q", "responses": [
        {"text": "a", "scores": {"length": 1}}, {"text": "b", "scores": {"length": 3}}]}
    assert check(Item(clean, "f:1"), TRAINED) == []
    assert check(Item(chain, "f:2"), TRAINED) == []
    with pytest.raises(ValueError, match=r"id 'x-1' is also at .*part.jsonl:1"):
        load([write(tmp_path, [REWRITE, clean, chain])], TRAINED)


def test_checks_and_diversity_statistics():
    assert checks_passed("Canberra it is.", REWRITE["checks"]) == (2, 2)
    assert checks_passed(REWRITE["answer"], REWRITE["checks"]) == (0, 2)
    assert distinct_ngrams(["a b c a b c"]) == 0.75
    assert openings(["Sure thing, yes.", "Sure thing, no."])["sure thing yes"] == 1
    ratio, query, other = nearest(["How do I boil an egg?"], ["How do I boil eggs?", "Fix a tyre"])
    assert other == "How do I boil eggs?" and ratio > 0.8


def test_judging_a_held_out_item_by_chrf_and_checks():
    good = judge_item(REWRITE, "The capital of Australia is Canberra.", {})
    bad = judge_item(REWRITE, "Sydney, obviously, you dolt. Truly.", {})
    assert good["outcomes"]["factuality"] == {"chrf": "win", "independent": "win"}
    assert bad["outcomes"]["factuality"]["independent"] == "tie"
    clean = {**REWRITE, "kind": "clean", "fixes": [], "rewrite": REWRITE["answer"],
             "checks": {"must_drop": [], "must_keep": ["Sydney"]}}
    kept, lost = judge_item(clean, clean["answer"], {}), judge_item(clean, "Perth.", {})
    assert kept["similarity"] == 1.0 and lost["lost_keep"] == ["Sydney"]
    items = [Item(REWRITE, "a"), Item(clean, "b"), Item(clean, "c")]
    records = [{"aligned": "x", "latency_s": 1.0, "metadata": {}},
               {"aligned": clean["answer"], "latency_s": 1.0, "metadata": {}},
               {"aligned": "Perth.", "latency_s": 1.0, "metadata": {"fallback_reason": "echo"}}]
    summary = summarize(items, records, [good, kept, lost])
    assert summary["objectives"]["factuality"]["chrf"]["win_rate"] == 1.0
    assert summary["clean"] == {"items": 2, "kept": 1, "rate": 0.5}
    assert summary["fallbacks"]["count"] == 1 and summary["harm"]["count"] == 1


def test_committed_corpus_passes_its_checks_and_matches_the_data_card_counts():
    """stats.py runs on the committed corpus, held-out sets and validation set, and stats.json
    (which the data card's figures come from) is what it counts today: a part added without a
    recount fails."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples/default_aligner/corpus/stats.py"
    spec = importlib.util.spec_from_file_location("corpus_stats", path)
    stats = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stats)
    train = load(sorted((stats.HERE / "train").glob("*.jsonl")), stats.TRAINED)
    recorded = json.loads((stats.HERE / "stats.json").read_text())
    assert json.loads(json.dumps(stats.describe(train))) == recorded["train"]
    assert recorded["unseen_objectives_in_train"] == []
    for name, folder in stats.HELD_OUT.items():  # the held-out sets and the topic-split validation set
        items = load(sorted(folder.glob("*.jsonl")), stats.TRAINED + stats.UNSEEN)
        assert json.loads(json.dumps(stats.describe(items))) == recorded[name], name


def test_reworded_objectives_reach_the_aligner_and_the_judges_keep_the_keys():
    from trainer.evaluate.rewrites import default_aligner, reworded, runnable_input

    wordings = {"harmlessness": ["Safety: no harm", "No cruelty: mock nobody"], "length": ["Brevity: short"]}
    row = {"id": "v-7", "query": "q", "answer": "a", "objectives": ["harmlessness", "empathy", "length"]}
    once = reworded(row, wordings)
    assert once == reworded(dict(row), wordings)  # the same wording on every run
    assert once["objectives"][0] in wordings["harmlessness"]
    assert once["objectives"][1:] == ["empathy", "Brevity: short"] and row["objectives"][0] == "harmlessness"
    picks = {reworded({**row, "id": f"v-{n}"}, wordings)["objectives"][0] for n in range(40)}
    assert picks == set(wordings["harmlessness"])  # spread over the wordings by id
    assert runnable_input(once)["objectives"][2] == "Brevity: short"
    # Outputs cached for the catalogue's wording are not reused for another wording.
    assert default_aligner(wordings=wordings)[1] != default_aligner()[1]
