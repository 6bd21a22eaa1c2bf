"""What a stage trains and with what: the base (`base: default` resolved), its tokenizer, the model
(a new or continued LoRA adapter, or full weights), the stage's rows tokenized with their
completion mask, and trl's `SFTConfig` from `TrainConfig`.

Loss is on the completion tokens and EOS only. The prompt is tokenized on its own (with BOS) and
the completion after it, so training sees exactly the token boundary inference sees after
``Edit: `` (`tokenize_rows`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trainer.config import DEFAULT_BASE, TrainConfig
from trainer.jsonl import read_jsonl


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of one stage file; [] when the file is missing."""
    if not path.is_file():
        return []
    return read_jsonl(path)


def read_data_summary(data_dir: str | Path) -> dict[str, Any]:
    path = Path(data_dir) / "summary.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"`data` {str(data_dir)!r} has no summary.json; build it first with "
            "`ma-train data build INPUT --format FORMAT --out DIR`."
        )
    return json.loads(path.read_text())


def tokenize_rows(rows: Sequence[dict], tokenizer: Any) -> Any:
    """A `datasets.Dataset` of input_ids + completion_mask: prompt (with BOS), completion, EOS.

    trl's `completion_only_loss` applies this `completion_mask` (it is the only mask). We build
    it instead of handing trl prompt/completion text because trl tokenizes prompt + completion as
    one string, and every prompt ends with a space (``Edit: ``) that BPE merges into the first
    word of the completion: measured with trl 1.16 on the built-in aligner's SmolLM2 tokenizer
    (and the tiny test tokenizer), the prompt's last token (" ") is dropped and the target starts
    with " Mix" where inference feeds "...Edit: " and generates "Mix"; trl warns that the model is
    trained on a context it never sees at inference. Tokenizing the parts apart keeps the served
    prompt ids verbatim (tests/trainer/test_completion_mask.py).
    """
    from datasets import Dataset

    items = []
    for row in rows:
        prompt_ids = tokenizer(row["prompt"])["input_ids"]
        completion_ids = completion_token_ids(tokenizer, row["completion"])
        items.append(
            {
                "input_ids": prompt_ids + completion_ids,
                "completion_mask": [0] * len(prompt_ids) + [1] * len(completion_ids),
            }
        )
    return Dataset.from_list(items)


def completion_token_ids(tokenizer: Any, text: str) -> list[int]:
    """A completion's ids as the stages train on them: tokenized apart from its prompt, no
    special tokens, then EOS (`tokenize_rows`)."""
    return [*tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]


def resolve_base(config: TrainConfig) -> TrainConfig:
    """`base: default` names the built-in default aligner's transformers copy (built on first use)."""
    if config.base != DEFAULT_BASE:
        return config
    from metaaligner_chain.models.defaults import default_hf_model_dir

    return config.model_copy(update={"base": str(default_hf_model_dir())})


def load_tokenizer(base: str) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    return tokenizer


def load_model(config: TrainConfig, init_from: Path | None) -> Any:
    """The model a stage trains: LoRA adapter (new, or the previous stage's) or full weights."""
    import torch
    from transformers import AutoModelForCausalLM

    if not config.lora:
        return AutoModelForCausalLM.from_pretrained(str(init_from or config.base), dtype=torch.float32)
    from peft import LoraConfig, PeftModel, get_peft_model

    base = AutoModelForCausalLM.from_pretrained(config.base, dtype=torch.float32)
    if init_from is not None:
        return PeftModel.from_pretrained(base, str(init_from), is_trainable=True)
    targets = list(config.lora_targets)
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets[0] if targets == ["all-linear"] else targets,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(base, lora)


def sft_args(config: TrainConfig, stage: str, stage_dir: Path) -> Any:
    import torch
    from trl import SFTConfig

    cuda = torch.cuda.is_available()
    bf16 = config.bf16 if config.bf16 is not None else cuda and torch.cuda.is_bf16_supported()
    return SFTConfig(
        output_dir=str(stage_dir),
        num_train_epochs=config.epochs_for(stage),
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.lr_for(stage),
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,  # a float < 1 is a ratio of the total steps
        weight_decay=config.weight_decay,
        max_length=config.max_length,
        completion_only_loss=True,
        bf16=bool(bf16),
        use_cpu=not cuda,
        activation_checkpointing=config.activation_checkpointing,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        logging_steps=config.logging_steps,
        eval_strategy="no",  # evaluated once, after the stage
        report_to=[],
        disable_tqdm=True,
        seed=config.seed,
        data_seed=config.seed,
        ddp_find_unused_parameters=False,
        dataloader_num_workers=0,
        train_sampling_strategy=config.sampling,
    )
