"""`ma-train` command tree, YAML recipes and the `data build` verb."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from trainer.cli import app
from trainer.config import DataConfig, TrainConfig
from trainer.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

VERBS = [
    [], ["data"], ["data", "build"], ["data", "score"], ["train"], ["merge"], ["export"],
    ["export", "gguf"], ["export", "gguf-lora"], ["export", "adapter"], ["eval"], ["run"], ["tiny"],
]


@pytest.mark.parametrize("verb", VERBS, ids=lambda v: " ".join(v) or "ma-train")
def test_help_of_every_verb(verb):
    result = runner.invoke(app, [*verb, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_help_shows_the_defaults():
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "300"})
    assert "LoRA rank. (default: 16)" in result.output
    result = runner.invoke(app, ["export", "gguf-lora", "--help"], env={"COLUMNS": "300"})
    assert "Weight type of the GGUF LoRA. (default: f16)" in result.output


def test_importing_the_cli_loads_no_heavy_library():
    code = (
        "import sys, trainer.cli; "
        "print([m for m in ('torch', 'transformers', 'trl', 'datasets', 'peft') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_tiny_recipe_in_examples_loads_and_checks():
    recipe = load_recipe(ROOT / "examples" / "train_tiny.yaml")
    assert recipe.data == DataConfig(
        input="examples/data/ultrafeedback_tiny.jsonl", format="ultrafeedback", out="runs/tiny-data",
        seed=0, warmup_fraction=0.5, tie_tolerance=0.0, val_fraction=0.2,
    )
    assert recipe.train.base == "runs/tiny-base" and recipe.train.data == recipe.data.out
    assert recipe.train.stages == ("warmup", "equal", "preference")
    assert not recipe.train.lora and recipe.train.lr == 3e-3 and recipe.train.epochs == 40
    assert (ROOT / recipe.data.input).is_file()


def test_every_example_recipe_loads():
    recipes = sorted([*(ROOT / "examples").glob("**/train*.yaml"), *(ROOT / "examples").glob("**/recipe.yaml")])
    assert len(recipes) >= 2
    for path in recipes:
        assert load_recipe(path).train is not None


def test_unknown_key_in_a_recipe_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  base: b\n  data: d\n  out: o\n  learning_rat: 0.1\n")
    with pytest.raises(ValueError, match="`learning_rat` is not a setting; known keys:.*learning_rate"):
        load_recipe(path)


def test_flags_override_the_file(tmp_path):
    """`--config` reads the section, the flags given replace its values, pydantic checks the rest."""
    from trainer.options import command

    seen = []
    path = tmp_path / "r.yaml"
    path.write_text("train:\n  base: b\n  data: d\n  out: o\n  epochs: 3\n  lora: true\n")
    verb = command(TrainConfig, "train", "train", seen.append)
    verb(config=path, **{name: None for name in TrainConfig.model_fields} | {"epochs": 1.0, "lora": False})
    config = seen[-1]
    assert (config.epochs, config.lora, config.out) == (1.0, False, "o")
    assert config.lr == 1e-5  # the paper's rate for full fine-tuning


def test_train_without_base_names_the_missing_key():
    result = runner.invoke(app, ["train", "--data", "d", "--out", "o"])
    assert result.exit_code == 2
    assert "`base` is missing (required)" in result.output


class Extended(TrainConfig):
    """`ma-train train` with one more setting, as a contributor would add it."""

    label_smoothing: float = 0.0
    """Smooth the targets by this much."""


def _options(typer_app: typer.Typer, *verb: str) -> dict[str, str]:
    """Option name → help of a verb, from the click command Typer builds."""
    group = typer.main.get_command(typer_app)
    ctx = group.make_context("ma-train", list(verb), resilient_parsing=True)
    command = group
    for name in verb:
        command = command.get_command(ctx, name)
    return {opt: param.help or "" for param in command.params for opt in param.opts}


def test_a_setting_is_declared_once(tmp_path):
    """A field added to a settings model is an option (its docstring the help) and a recipe key."""
    from trainer.options import command

    seen = []
    probe = typer.Typer()
    probe.command("train")(command(Extended, "train", "train", seen.append))
    probe.command("other")(lambda: None)
    assert _options(probe, "train")["--label-smoothing"] == "Smooth the targets by this much. (default: 0.0)"
    result = runner.invoke(probe, ["train", "--base", "b", "--data", "d", "--out", "o",
                                   "--label-smoothing", "0.1"])
    assert result.exit_code == 0, result.output
    assert seen[-1].label_smoothing == 0.1
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  base: b\n  data: d\n  out: o\n  label_smoothing: 0.2\n")
    assert runner.invoke(probe, ["train", "--config", str(recipe)]).exit_code == 0
    assert seen[-1].label_smoothing == 0.2


def test_option_names_are_field_names():
    options = _options(app, "train")
    for name, field in TrainConfig.model_fields.items():
        flag = "--" + name.replace("_", "-")
        assert options[flag].startswith(field.description)


def test_bad_values_name_the_field_the_value_and_the_fix():
    result = runner.invoke(app, ["train", "--base", "b", "--data", "d", "--out", "o",
                                 "--batch-size", "0", "--stage", "warm"], terminal_width=200)
    assert result.exit_code == 2
    assert "`batch_size` is 0; it should be greater than or equal to 1" in result.output
    assert "`stage` is 'warm'; it should be 'warmup', 'equal', 'preference' or 'all'" in result.output


def test_no_import_circles_in_the_trainer():
    """Each trainer module imports on its own, first, in a fresh interpreter (a circle fails)."""
    modules = sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in (ROOT / "trainer").rglob("*.py")
    )
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    for module in modules:
        subprocess.run([sys.executable, "-c", code, module], cwd=ROOT, check=True)


def test_data_build_writes_rows_and_summary(tmp_path):
    out = tmp_path / "data"
    result = runner.invoke(app, [
        "data", "build", str(ROOT / "examples" / "data" / "hh_rlhf_tiny.jsonl"), "--format", "hh-rlhf",
        "--out", str(out), "--val-fraction", "0", "--seed", "3",
    ])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["prompt_format"] == "hh-rlhf" and summary["seed"] == 3
    for name in ("warmup.jsonl", "equal.jsonl", "preference.jsonl", "val/preference.jsonl"):
        lines = (out / name).read_text().splitlines()
        assert len(lines) == summary["files"][name]["rows"]
        for line in lines:
            assert set(json.loads(line)) == {"prompt", "completion", "objectives", "mode"}
    assert summary["files"]["preference.jsonl"]["rows"] == 5


def test_data_build_bad_format_is_a_clean_error(tmp_path):
    result = runner.invoke(app, ["data", "build", "x.jsonl", "--format", "alpaca", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "`format` is 'alpaca'; it should be 'ultrafeedback', 'hh-rlhf', 'helpsteer' or 'generic'" in result.output


@pytest.mark.parametrize("content, fmt, expected", [
    (b'{"query": "q", "responses": [{"text": "a", "scores": {"x": 1}}]}\n\n'
     b'{"query": "q2", "responses": [{"scores": {"x": 1}}]}\n', "generic",
     r"bad\.jsonl:3: the generic row lacks the field 'text'; each row should be \{\"query\""),
    (b'{"instruction": "q"}\n{"completions": []}\n', "ultrafeedback",
     r"bad\.jsonl:2: the ultrafeedback row lacks the field 'instruction'"),
    (b'{"query": "q", "responses": []}\n{"query": 2,\n', "generic", r"bad\.jsonl:2: not JSON \(.* at column \d+\); write one JSON object"),
    (b'{"query": "q", "responses": []}\n\xff\n', "generic", r"bad\.jsonl:2: not UTF-8"),
])
def test_data_build_errors_name_the_file_and_line(tmp_path, content, fmt, expected):
    import re

    (tmp_path / "bad.jsonl").write_bytes(content)
    result = runner.invoke(app, ["data", "build", str(tmp_path / "bad.jsonl"), "--format", fmt,
                                 "--out", str(tmp_path / "out")], terminal_width=400)
    assert result.exit_code == 2
    assert re.search(expected, " ".join(result.output.split())), result.output


def test_train_refuses_to_write_over_its_base(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    for out in (base, base / "run"):
        result = runner.invoke(app, ["train", "--base", str(base), "--data", "d", "--out", str(out)],
                               terminal_width=400)
        assert result.exit_code == 2
        assert "overlaps `base`" in result.output and "training would overwrite it" in result.output


def test_a_misspelt_stage_in_per_stage_settings_is_named():
    result = runner.invoke(app, ["train", "--base", "b", "--data", "d", "--out", "o",
                                 "--stage-epochs", "prefrence=2"], terminal_width=200)
    assert result.exit_code == 2
    assert "`stage_epochs.key` is 'prefrence'; it should be 'warmup', 'equal' or 'preference'" in result.output


def test_skip_bad_rows_leaves_them_out_and_counts_them(tmp_path):
    good = '{"query": "q%d", "answer": "a bad answer", "objectives": ["length"], "rewrite": "better"}\n'
    content = (good % 1 + '{"query": "q2", "answer": "x"}\n' + "{oops\n" + good % 2).encode() + b"\xff\n"
    (tmp_path / "bad.jsonl").write_bytes(content)
    args = ["data", "build", str(tmp_path / "bad.jsonl"), "--format", "generic", "--out", str(tmp_path / "out"),
            "--val-fraction", "0"]
    stopped = runner.invoke(app, args, terminal_width=400)
    assert stopped.exit_code == 2 and "bad.jsonl:2: the generic row has neither" in " ".join(stopped.output.split())
    assert "--skip-bad-rows" in stopped.output
    result = runner.invoke(app, [*args, "--skip-bad-rows"], terminal_width=400)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["groups"] == 2
    assert [s.split(": ")[0].rsplit("/", 1)[-1] for s in summary["skipped_rows"]] == ["bad.jsonl:2", "bad.jsonl:3", "bad.jsonl:5"]


def test_eval_options_are_its_settings_fields():
    """`ma-train eval` is generated from `EvalConfig` like the other verbs: option = field = key."""
    from trainer.config import EvalConfig

    options = _options(app, "eval")
    for name, field in EvalConfig.model_fields.items():
        assert options["--" + name.replace("_", "-")].startswith(field.description)
    assert "--config" in options


def test_eval_reads_its_recipe_section_under_the_flags(tmp_path):
    from trainer.config import EvalConfig
    from trainer.evaluate.cli import _judges
    from trainer.options import command

    seen = []
    probe = typer.Typer()
    probe.command("eval")(command(EvalConfig, "eval", "eval", seen.append))
    probe.command("other")(lambda: None)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("eval:\n  data: rows.jsonl\n  out: o\n  objectives: harmlessness,length\n"
                      "  judge: openai:gpt-4o\n  scorer: {harmlessness: ./safety}\n  seed: 3\n")
    assert runner.invoke(probe, ["eval", "--config", str(recipe)]).exit_code == 0
    assert seen[-1].objectives == ("harmlessness", "length") and seen[-1].judge == ("openai:gpt-4o",)
    result = runner.invoke(probe, ["eval", "--config", str(recipe), "--judge", "fake:judge",
                                   "--judge", "len=offline", "--seed", "5"])
    assert result.exit_code == 0, result.output
    config = seen[-1]
    assert (config.data, config.scorer, config.seed) == ("rows.jsonl", {"harmlessness": "./safety"}, 5)
    assert _judges(config.judge, config.objectives) == {"harmlessness": "fake:judge", "length": "fake:judge",
                                                        "len": "offline"}


@pytest.mark.parametrize("args, expected", [
    (["--objectives", "length", "--scorer", "length"], "`--scorer` got 'length'; write objective=MODEL"),
    (["--objectives", "length", "--judge", "a:b", "--judge", "c:d"], "`judge` has 2 judges for every objective"),
    (["--limit", "3"], "`limit` apply to rows judged per objective; name the `objectives` too"),
    (["--objectives", "length", "--label", "x"], "`label` is recorded for rewrite items only"),
])
def test_eval_settings_that_do_not_fit_are_named(args, expected):
    result = runner.invoke(app, ["eval", "--data", "d.jsonl", "--out", "o", *args], terminal_width=400)
    assert result.exit_code == 2
    assert expected in " ".join(result.output.split()), result.output


def test_run_reuses_a_data_build_whose_inputs_are_unchanged(tmp_path):
    """The build records a fingerprint of its inputs; `run` reuses it until a file or a setting
    changes (`ma-train data build` always builds)."""
    source = tmp_path / "in.jsonl"
    source.write_text((ROOT / "examples" / "data" / "hh_rlhf_tiny.jsonl").read_text())
    recipe = tmp_path / "r.yaml"
    out = tmp_path / "data"

    def run(seed: int = 0):
        recipe.write_text(f"data:\n  input: {source}\n  format: hh-rlhf\n  out: {out}\n  val_fraction: 0\n"
                          f"  seed: {seed}\n")
        result = runner.invoke(app, ["run", str(recipe)], terminal_width=400)
        assert result.exit_code == 0, result.output
        return " ".join(result.output.split())

    run()
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["fingerprint"]) == {"files", "settings", "code", "sha256"}
    assert list(summary["fingerprint"]["files"]) == ["in.jsonl"]
    (out / "equal.jsonl").write_text("marker\n")  # a rebuild would overwrite it
    assert f"{out}: reused" in run()
    assert (out / "equal.jsonl").read_text() == "marker\n"

    assert f"{out}: rebuilding (settings changed)" in run(seed=1)
    assert (out / "equal.jsonl").read_text() != "marker\n"
    assert json.loads((out / "summary.json").read_text())["seed"] == 1

    lines = source.read_text().splitlines()
    source.write_text("\n".join(lines[:-1]) + "\n")  # one record fewer
    assert f"{out}: rebuilding (in.jsonl changed)" in run(seed=1)
    assert json.loads((out / "summary.json").read_text())["groups"] == summary["groups"] - 1
    assert f"{out}: reused" in run(seed=1)
    (out / "equal.jsonl").write_text("marker\n")
    built = runner.invoke(app, ["data", "build", str(source), "--format", "hh-rlhf", "--out", str(out),
                                "--val-fraction", "0", "--seed", "1"])
    assert built.exit_code == 0 and (out / "equal.jsonl").read_text() != "marker\n"
