"""The three SFT stages on the tiny in-process llama: they run, learn, resume and go distributed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainer.config import DataConfig, TrainConfig
from trainer.data.formats import load_groups
from trainer.data.reformulate import reformulate, summarize, write_splits
from trainer.train.stages import DONE_FILE, run_training

ROOT = Path(__file__).resolve().parents[2]
STAGES = ["warmup", "equal", "preference"]
FAST = dict(batch_size=4, logging_steps=1, save_steps=100, warmup_ratio=0.0, lr_scheduler="constant")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("rows")
    config = DataConfig(
        input=str(ROOT / "examples" / "data" / "ultrafeedback_tiny.jsonl"), format="ultrafeedback",
        out=str(out), warmup_fraction=0.5, val_fraction=0.0,
    )
    splits = reformulate(load_groups(config.input, config.format), config)
    write_splits(splits, summarize(splits, config, 6), out)
    return out


class Recorder:
    """A TrainerCallback that checks what the trainer may change, per stage."""

    def __init__(self):
        self.stages: list[dict] = []

    def __getattr__(self, name):  # every other callback event is a no-op
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        frozen = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
        lora = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        self.stages.append({"frozen": frozen, "lora": lora, "trainable": trainable, "model": model})


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir, data_dir, tmp_path_factory):
    recorder = Recorder()
    config = TrainConfig(
        base=str(tiny_model_dir), data=str(data_dir), out=str(tmp_path_factory.mktemp("run") / "lora"),
        max_steps=8, learning_rate=1e-2, **{**FAST, "batch_size": 16},  # every step sees all rows
    )
    metadata = run_training(config, callbacks=[recorder])
    return config, metadata, recorder


def test_each_stage_runs_and_continues_the_same_adapter(lora_run):
    config, metadata, _ = lora_run
    assert metadata["stages"] == STAGES
    for stage in STAGES:
        stage_dir = Path(config.out) / "stages" / stage
        assert (stage_dir / "adapter_model.safetensors").is_file()
        assert json.loads((stage_dir / DONE_FILE).read_text())["steps"] == 8
        logged = json.loads((stage_dir / "log_history.json").read_text())
        assert [log["step"] for log in logged if "loss" in log] == list(range(1, 9))
    equal_meta = json.loads((Path(config.out) / "stages" / "equal" / "metaaligner.json").read_text())
    assert equal_meta["init_from"].endswith("stages/warmup")


def test_loss_falls_in_every_stage(lora_run):
    _, metadata, _ = lora_run
    for stage in STAGES:
        metrics = metadata["metrics"][stage]
        assert metrics["last_loss"] < metrics["first_loss"], (stage, metrics)


def test_only_lora_weights_change_under_lora(lora_run):
    import torch

    _, _, recorder = lora_run
    assert len(recorder.stages) == 3
    for seen in recorder.stages:
        assert seen["trainable"] and all("lora_" in n for n in seen["trainable"])
        after = dict(seen["model"].named_parameters())
        for name, before in seen["frozen"].items():
            assert torch.equal(after[name].detach(), before), name
        changed = [n for n, before in seen["lora"].items() if not torch.equal(after[n].detach(), before)]
        assert changed and all("lora_" in n for n in changed)


def test_run_dir_holds_the_merged_model_and_metadata(lora_run, tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config, _, _ = lora_run
    out = Path(config.out)
    assert not (out / "adapter_config.json").exists()  # loads as a plain model, not an adapter
    merged = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged.state_dict()[name], base.state_dict()[name])
    assert AutoTokenizer.from_pretrained(out).eos_token == "</s>"
    meta = json.loads((out / "metaaligner.json").read_text())
    assert meta["prompt_format"] == "ultrafeedback"
    assert meta["base_model"] == str(tiny_model_dir)
    assert meta["stages"] == STAGES and meta["method"] == "lora"
    assert meta["adapter"] == "stages/preference"
    assert set(meta["objectives"]) <= {"instruction_following", "honesty", "truthfulness", "helpfulness"}
    assert meta["data_summary"]["files"]["preference.jsonl"]["rows"] > 0


@pytest.fixture(scope="module")
def identity_run(tiny_model_dir, data_dir, tmp_path_factory):
    config = TrainConfig(
        base=str(tiny_model_dir), data=str(data_dir), out=str(tmp_path_factory.mktemp("run") / "full"),
        stage="warmup", lora=False, max_steps=40, learning_rate=3e-3, **FAST,
    )
    run_training(config)
    return config


def test_warmup_learns_the_identity_map(identity_run, data_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = [json.loads(line) for line in (data_dir / "warmup.jsonl").read_text().splitlines()]
    assert len(rows) >= 3
    tokenizer = AutoTokenizer.from_pretrained(identity_run.out)
    model = AutoModelForCausalLM.from_pretrained(identity_run.out)
    for row in rows:
        answer = row["prompt"].split("| Answer: ")[1].removesuffix(" | Edit: ")
        assert row["completion"] == answer
        inputs = tokenizer(row["prompt"], return_tensors="pt")
        output = model.generate(**inputs, max_new_tokens=48, do_sample=False)
        generated = output[0, inputs["input_ids"].shape[1]:]
        assert int(generated[-1]) == tokenizer.eos_token_id  # it learned to stop
        assert tokenizer.decode(generated, skip_special_tokens=True) == answer


def test_run_dir_loads_in_the_runnable(identity_run, data_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from metaaligner_chain.prompt import build_prompt
    from metaaligner_chain.runnable import MetaAlignerRunnable

    row = json.loads((data_dir / "warmup.jsonl").read_text().splitlines()[0])
    query = row["prompt"].split("| Query: ")[1].split(" | Answer: ")[0]
    answer = row["completion"]
    aligner = MetaAlignerRunnable(model=identity_run.out, objectives=row["objectives"], strict=True,
                                  max_new_tokens=48)
    assert aligner.resolved_prompt_format() == "ultrafeedback"  # read from metaaligner.json
    result = aligner.invoke({"query": query, "response": answer})
    # the runnable asks for "better"; the same greedy decoding straight from RUN_DIR agrees
    prompt = build_prompt(query, answer, row["objectives"], prompt_format="ultrafeedback")
    tokenizer = AutoTokenizer.from_pretrained(identity_run.out)
    inputs = tokenizer(prompt, return_tensors="pt")
    output = AutoModelForCausalLM.from_pretrained(identity_run.out).generate(
        **inputs, max_new_tokens=48, do_sample=False
    )
    expected = tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert result["response"] == expected.strip() and result["original_response"] == answer


class Interrupt:
    """Raise after optimizer step `at` (checkpoints were saved every 2 steps)."""

    def __init__(self, at):
        self.at, self.steps = at, []

    def __getattr__(self, name):
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)
        if self.at is not None and state.global_step == self.at:
            raise KeyboardInterrupt("simulated interruption")


def test_resume_after_an_interruption_ends_at_the_same_step(tiny_model_dir, data_dir, tmp_path):
    config = TrainConfig(
        base=str(tiny_model_dir), data=str(data_dir), out=str(tmp_path / "run"), stage="warmup",
        max_steps=6, learning_rate=1e-2, **{**FAST, "save_steps": 2},
    )
    with pytest.raises(KeyboardInterrupt):
        run_training(config, callbacks=[Interrupt(at=3)])
    stage_dir = tmp_path / "run" / "stages" / "warmup"
    assert (stage_dir / "checkpoint-2").is_dir() and not (stage_dir / DONE_FILE).exists()
    resumed = Interrupt(at=None)
    metadata = run_training(config.model_copy(update={"resume": True}), callbacks=[resumed])
    assert resumed.steps == [3, 4, 5, 6]  # continued from checkpoint-2
    assert metadata["metrics"]["warmup"]["steps"] == 6


def test_torchrun_two_processes_gloo(tiny_model_dir, data_dir, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "trainer.cli", "train", "--base", str(tiny_model_dir), "--data", str(data_dir),
        "--out", str(out), "--stage", "warmup", "--max-steps", "2", "--batch-size", "2",
        "--logging-steps", "1",
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # a log, not a terminal: plain step lines, and no warning the user did not cause
    assert done.stderr.count("[warmup] step 1/2 loss") == 1  # from the main process only
    assert "[warmup] done: 2 steps" in done.stderr
    assert "Warning" not in done.stderr, done.stderr
    metrics = json.loads((out / "stages" / "warmup" / DONE_FILE).read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 2
    assert json.loads((out / "metaaligner.json").read_text())["stages"] == ["warmup"]
    assert (out / "model.safetensors").is_file()


def test_the_tiny_recipe_runs_through_the_cli(tiny_model_dir, tmp_path):
    """`ma-train run examples/train_tiny.yaml`, with paths moved to tmp and fewer epochs."""
    import yaml
    from transformers import AutoModelForCausalLM
    from typer.testing import CliRunner

    from trainer.cli import app

    recipe = yaml.safe_load((ROOT / "examples" / "train_tiny.yaml").read_text())
    recipe["data"].update(input=str(ROOT / recipe["data"]["input"]), out=str(tmp_path / "data"))
    recipe["train"].update(base=str(tiny_model_dir), data=str(tmp_path / "data"),
                           out=str(tmp_path / "run"), epochs=2)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = CliRunner().invoke(app, ["run", str(path)])
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "run" / "metaaligner.json").read_text())
    assert meta["stages"] == STAGES and meta["method"] == "full"
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "run").config.model_type == "llama"


def test_per_stage_epochs_and_learning_rate(tiny_model_dir, data_dir, tmp_path):
    """stage_epochs / stage_learning_rate replace the shared values for the stages they name only."""
    config = TrainConfig(
        base=str(tiny_model_dir), data=str(data_dir), out=str(tmp_path / "run"), epochs=1.0,
        learning_rate=1e-3, stage_epochs={"preference": 2.0}, stage_learning_rate={"equal": 5e-3}, **FAST,
    )
    run_training(config)
    steps, peak = {}, {}
    for stage in STAGES:
        rows = sum(1 for _ in open(data_dir / f"{stage}.jsonl"))
        steps[stage] = json.loads((Path(config.out) / "stages" / stage / DONE_FILE).read_text())["steps"]
        log = json.loads((Path(config.out) / "stages" / stage / "log_history.json").read_text())
        peak[stage] = max(entry["learning_rate"] for entry in log if "learning_rate" in entry)
        assert steps[stage] == -(-rows // 4) * (2 if stage == "preference" else 1), stage
    assert peak == {"warmup": pytest.approx(1e-3), "equal": pytest.approx(5e-3), "preference": pytest.approx(1e-3)}


def test_resume_skips_a_damaged_newest_checkpoint(tiny_model_dir, data_dir, tmp_path, capsys):
    """A save killed halfway leaves a torn checkpoint: resume warns and continues from the one before."""
    config = TrainConfig(
        base=str(tiny_model_dir), data=str(data_dir), out=str(tmp_path / "run"), stage="warmup",
        max_steps=6, learning_rate=1e-2, **{**FAST, "save_steps": 2, "save_total_limit": 3},
    )
    with pytest.raises(KeyboardInterrupt):
        run_training(config, callbacks=[Interrupt(at=5)])
    stage_dir = tmp_path / "run" / "stages" / "warmup"
    torn = stage_dir / "checkpoint-4" / "optimizer.pt"
    torn.write_bytes(torn.read_bytes()[: torn.stat().st_size // 2])
    resumed = Interrupt(at=None)
    run_training(config.model_copy(update={"resume": True}), callbacks=[resumed])
    assert resumed.steps == [3, 4, 5, 6]  # from checkpoint-2, not the torn checkpoint-4
    assert "checkpoint-4 is damaged (optimizer.pt unreadable" in capsys.readouterr().err
    assert (stage_dir / "checkpoint-4.damaged").is_dir()


def test_a_rerun_without_resume_says_it_replaces_checkpoints(tiny_model_dir, data_dir, tmp_path, capsys):
    config = TrainConfig(
        base=str(tiny_model_dir), data=str(data_dir), out=str(tmp_path / "run"), stage="warmup",
        max_steps=2, learning_rate=1e-2, **{**FAST, "save_steps": 2},
    )
    run_training(config)
    capsys.readouterr()
    run_training(config)
    assert "stage warmup: replacing 1 checkpoint(s)" in capsys.readouterr().err


def test_out_holding_a_foreign_model_is_refused(tiny_model_dir, data_dir, tmp_path):
    import shutil

    foreign = tmp_path / "someone-elses-model"
    shutil.copytree(tiny_model_dir, foreign)
    config = TrainConfig(base=str(tiny_model_dir), data=str(data_dir), out=str(foreign), max_steps=1, **FAST)
    with pytest.raises(ValueError, match="holds a model this trainer did not make"):
        run_training(config)


def test_continuing_a_run_made_from_another_base_is_refused(tiny_model_dir, data_dir, tmp_path):
    import shutil

    config = TrainConfig(
        base=str(tiny_model_dir), data=str(data_dir), out=str(tmp_path / "run"), stage="warmup",
        max_steps=1, **FAST,
    )
    run_training(config)
    other = tmp_path / "other-base"
    shutil.copytree(tiny_model_dir, other)
    follow = config.model_copy(update={"base": str(other), "stage": "equal"})
    with pytest.raises(ValueError, match=rf"stages/warmup trained with base_model '{tiny_model_dir}'.*this run's is '{other}'"):
        run_training(follow)
