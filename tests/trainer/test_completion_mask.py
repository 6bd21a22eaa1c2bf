"""Why the stages tokenize prompt and completion apart: trl alone would train on another prompt."""

from __future__ import annotations

from metaaligner_chain.prompt import build_prompt
from trainer.train.inputs import load_tokenizer, tokenize_rows

ROW = {"prompt": build_prompt("What is the capital of France?", "Paris, I think.", ["honesty"],
                              prompt_format="ultrafeedback"),
       "completion": "The capital of France is Paris."}


def _prepared(tiny_model_dir, tmp_path, dataset):
    """The first training row as trl's `SFTTrainer` prepares it (completion_only_loss=True)."""
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        args=SFTConfig(output_dir=str(tmp_path), completion_only_loss=True, use_cpu=True, report_to=[],
                       activation_checkpointing=False),
        train_dataset=dataset, processing_class=load_tokenizer(str(tiny_model_dir)),
    )
    row = trainer.train_dataset[0]
    start = next(i for i, label in enumerate(row["labels"]) if label != -100)
    return row["input_ids"][:start], row["input_ids"][start:]


def test_the_trained_prompt_is_the_served_prompt(tiny_model_dir, tmp_path):
    """When the last two asserts fail, trl keeps the prompt whole: hand it the text rows and drop
    `tokenize_rows`."""
    from datasets import Dataset

    tokenizer = load_tokenizer(str(tiny_model_dir))
    served = tokenizer(ROW["prompt"])["input_ids"]  # what the aligner reads at inference
    assert ROW["prompt"].endswith("Edit: ")

    prompt, target = _prepared(tiny_model_dir, tmp_path, tokenize_rows([ROW], tokenizer))
    assert prompt == served  # trl applies our completion_mask, and only it
    assert tokenizer.decode(target) == ROW["completion"] + tokenizer.eos_token

    prompt, target = _prepared(tiny_model_dir, tmp_path, Dataset.from_list([ROW]))
    assert prompt == served[:-1]  # trl alone: the prompt's final " " is cut off ...
    assert tokenizer.decode(target).startswith(" The capital")  # ... and merged into the target
