"""examples/default_aligner/gpu_study.py: answers aligned on the GPU machine are judged here
from what it wrote back, with no model at hand."""

from __future__ import annotations

import json
import sys

import pytest


@pytest.fixture
def gpu_study(example_script):
    yield example_script("gpu_study")
    for name in ("study", "validate", "make_answers"):  # imported by gpu_study
        sys.modules.pop(name, None)


def test_answers_written_by_align_are_judged_without_calling_a_model(gpu_study, tiny_model_dir,
                                                                      tmp_path, monkeypatch):
    sets = {name: items[:2] for name, items in gpu_study.validation_sets().items()}
    assert set(sets) == {"query", "topics"} and all(len(items) == 2 for items in sets.values())
    monkeypatch.setattr(gpu_study, "validation_sets", lambda: sets)
    candidate = next(iter(gpu_study.CANDIDATES))
    runnable = gpu_study.runnable_for(str(tiny_model_dir), batch_size=4)
    gpu_study.align(candidate, runnable.model_copy(update={"max_new_tokens": 8}),
                    tmp_path / candidate, limit=None)
    (tmp_path / candidate / "train.json").write_text(json.dumps({"train_s": 1.0}))
    monkeypatch.setattr(gpu_study, "OUT", tmp_path / "report")

    gpu_study.judge(tmp_path)  # `_not_aligned` raises if any answer is looked up under another key

    results = json.loads((tmp_path / "report" / "results.json").read_text())
    assert results[candidate]["train_s"] == 1.0
    assert {results[candidate][s]["items"] for s in ("query", "topics")} == {2}
    table = (tmp_path / "report" / "results.md").read_text()
    assert f"| {candidate} (query) |" in table and f"| {candidate} (topics) |" in table


def test_judge_refuses_an_item_the_gpu_run_did_not_align(gpu_study, tmp_path, monkeypatch):
    sets = {name: items[:1] for name, items in gpu_study.validation_sets().items()}
    monkeypatch.setattr(gpu_study, "validation_sets", lambda: sets)
    candidate = next(iter(gpu_study.CANDIDATES))
    (tmp_path / candidate / "query").mkdir(parents=True)
    (tmp_path / candidate / "query" / "aligned.jsonl").write_text("")
    monkeypatch.setattr(gpu_study, "OUT", tmp_path / "report")
    with pytest.raises(RuntimeError, match="no aligned answer from the GPU run"):
        gpu_study.judge(tmp_path)
