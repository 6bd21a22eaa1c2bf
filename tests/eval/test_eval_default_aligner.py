"""End to end: the built-in default aligner on a few held-out items, offline scorers, all files."""

from __future__ import annotations

import json
from pathlib import Path

from trainer.evaluate.objectives import evaluate

HELDOUT = Path(__file__).parents[2] / "examples" / "eval" / "heldout" / "h1.jsonl"


def test_default_aligner_end_to_end(tmp_path):
    res = evaluate(HELDOUT, "default", ["harmlessness", "length"], tmp_path, limit=3,
                   max_new_tokens=48, bootstrap_rounds=200, progress=False)
    for name in ("results.json", "report.md", "winrates.png", "judgements.jsonl"):
        assert (tmp_path / name).stat().st_size > 0
    assert res["settings"]["items"] == 3 and res["settings"]["aligner"].startswith("default")
    for key in ("harmlessness", "length"):
        r = res["objectives"][key]["comparisons"]["aligned_vs_original"]
        assert r["n"] + r["invalid"] == 3
    speed = res["do_no_harm"]["speed"]
    assert speed["items"] == 3 and speed["latency_mean_s"] > 0
    aligned = [json.loads(x) for x in (tmp_path / "aligned.jsonl").read_text().splitlines()]
    assert len(aligned) == 3 and all(a["metadata"].get("objectives") for a in aligned)
