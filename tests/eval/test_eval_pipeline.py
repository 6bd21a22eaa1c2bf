"""The evaluation pipeline on a fake aligner: files, judge paths, resuming, policy, CLI."""

from __future__ import annotations

import json

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.runnables import RunnableLambda

from trainer.evaluate.objectives import evaluate, load_rows
from trainer.evaluate.judges import ChatJudge, Judgement

ROWS = [
    {"query": "Any tips for sleep?", "response": "Go to bed, you lazy idiot.",
     "golden": "Keep a regular bedtime and avoid screens late at night."},
    {"query": "Capital of France?", "response": "Paris."},
    {"query": "Explain rain.", "response": "Water water water falls falls from clouds clouds.",
     "golden": "Water vapour cools into droplets that grow heavy and fall as rain."},
]
ALIGNED = {
    "Go to bed, you lazy idiot.": "Try going to bed at the same time each night.",
    "Paris.": "Paris.",
    "Water water water falls falls from clouds clouds.": "Droplets in clouds grow and fall.",
}


def fake_aligner(row):
    return {**row, "response": ALIGNED[row["response"]], "original_response": row["response"]}


class CountingJudge:
    """Always prefers x; counts the tasks it is asked."""

    name = "counting"

    def __init__(self):
        self.asked = 0

    def judge(self, tasks):
        self.asked += len(tasks)
        return [Judgement("win") for _ in tasks]


def test_offline_run_writes_all_files(tmp_path):
    res = evaluate(ROWS, RunnableLambda(fake_aligner), ["harmlessness", "repetition"], tmp_path,
                   bootstrap_rounds=200, progress=False)
    for name in ("results.json", "report.md", "winrates.png", "judgements.jsonl", "aligned.jsonl"):
        assert (tmp_path / name).stat().st_size > 0
    assert json.loads((tmp_path / "results.json").read_text()) == res
    harmless = res["objectives"]["harmlessness"]["comparisons"]
    assert harmless["aligned_vs_original"]["wins"] == 1  # the insult is gone
    assert harmless["aligned_vs_golden"]["n"] == 2  # only rows with a golden
    assert "gain_vs_golden" in res["objectives"]["harmlessness"]
    assert res["do_no_harm"]["unchanged"]["mean"] == pytest.approx(1 / 3)
    assert res["do_no_harm"]["harm"]["mean"] == 0.0
    report = (tmp_path / "report.md").read_text()
    assert "## harmlessness" in report and "| aligned vs original | 3 |" in report
    lines = [json.loads(x) for x in (tmp_path / "judgements.jsonl").read_text().splitlines()]
    assert any(x.get("identical") for x in lines)  # "Paris." unchanged: tie without a judge


def test_resume_judges_nothing_twice(tmp_path):
    calls = []

    def aligner(row):
        calls.append(row)
        return ALIGNED[row["response"]]

    first, second = CountingJudge(), CountingJudge()
    evaluate(ROWS, aligner, ["humour"], tmp_path, judge=first, progress=False,
             bootstrap_rounds=50)
    res = evaluate(ROWS, aligner, ["humour"], tmp_path, judge=second, progress=False,
                   bootstrap_rounds=50)
    assert len(calls) == 3 and first.asked == 6 and second.asked == 0  # 2+1+2 pairs + 1 identical
    assert res["objectives"]["humour"]["comparisons"]["aligned_vs_original"]["wins"] == 2


def test_chat_judge_end_to_end_reports_unparseable(tmp_path):
    # per item: aligned_vs_original, aligned_vs_golden, original_vs_golden, each in two orders;
    # item 2 has an identical pair and no golden, so it asks nothing.
    script = ["Verdict: A", "Verdict: B",  "I cannot decide.", "Verdict: A",
              "Verdict: B", "Verdict: A",
              "Verdict: A", "Verdict: A", "[[A]]", "[[B]]", "Verdict: tie", "Verdict: tie"]
    judge = ChatJudge(FakeListChatModel(responses=script), max_concurrency=1)  # script order
    res = evaluate(ROWS, fake_aligner, ["helpfulness"], tmp_path, judge=judge, progress=False,
                   bootstrap_rounds=50)
    block = res["objectives"]["helpfulness"]
    assert block["judge"].startswith("chat:")
    r = block["comparisons"]["aligned_vs_original"]
    assert (r["wins"], r["ties"], r["losses"], r["invalid"]) == (1, 2, 0, 0)
    assert block["comparisons"]["aligned_vs_golden"]["invalid"] == 1
    assert "| invalid |" in (tmp_path / "report.md").read_text()


def test_policy_writes_responses_first(tmp_path):
    policy = FakeListChatModel(responses=["Go to bed, you lazy idiot.", "Paris."])
    rows = [{"query": "Any tips for sleep?"}, {"query": "Capital of France?"}]
    res = evaluate(rows, fake_aligner, ["length"], tmp_path, policy=policy, progress=False,
                   bootstrap_rounds=50)
    assert res["settings"]["items"] == 2
    assert (tmp_path / "responses.jsonl").read_text().count("Paris.") == 1


def test_bad_rows_name_the_field(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"query": "q"}) + "\n")
    with pytest.raises(ValueError, match=r"row 1 has `response`"):
        load_rows(bad)
    with pytest.raises(FileNotFoundError, match="not a file"):
        load_rows(tmp_path / "missing.jsonl")


def test_cli_command(tmp_path):
    import typer
    from typer.testing import CliRunner

    from trainer.evaluate.cli import eval_command

    app = typer.Typer()
    app.command("eval")(eval_command)
    app.command("noop")(lambda: None)
    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    result = CliRunner().invoke(app, ["eval", "--data", str(data), "--objectives", "helpfulness",
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "--scorer helpfulness=MODEL" in result.output
    result = CliRunner().invoke(app, ["eval", "--data", str(data), "--objectives", "length",
                                      "--out", str(tmp_path / "out"), "--scorer", "length"])
    assert result.exit_code != 0 and "objective=MODEL" in result.output


def test_cli_chat_judge_for_all_with_a_per_objective_override(tmp_path, monkeypatch):
    import langchain.chat_models
    import typer
    from typer.testing import CliRunner

    import trainer.evaluate.aligner
    from trainer.evaluate.cli import eval_command

    made = []

    def fake_init(spec, **kwargs):
        made.append((spec, kwargs))
        return FakeListChatModel(responses=["Verdict: A", "Verdict: B"])

    real = trainer.evaluate.aligner.as_aligner
    monkeypatch.setattr(langchain.chat_models, "init_chat_model", fake_init)
    monkeypatch.setattr(trainer.evaluate.aligner, "as_aligner",
                        lambda aligner, *rest: real(fake_aligner, *rest))
    app = typer.Typer()
    app.command("eval")(eval_command)
    app.command("noop")(lambda: None)
    data = tmp_path / "test.jsonl"
    data.write_text(json.dumps(ROWS[0]) + "\n")
    result = CliRunner().invoke(app, [
        "eval", "--data", str(data), "--objectives", "helpfulness,length",
        "--judge", "fake:judge", "--judge", "len=offline", "--out", str(tmp_path / "out"),
    ])
    assert result.exit_code == 0, result.output
    assert made == [("fake:judge", {"temperature": 0})]
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert res["settings"]["judges"] == {"helpfulness": "chat:fake:judge",
                                         "length": "scorer:concision"}
    assert res["objectives"]["helpfulness"]["comparisons"]["aligned_vs_original"]["wins"] == 1
