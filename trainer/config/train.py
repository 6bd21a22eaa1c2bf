"""Settings of `ma-train train`: the three SFT stages, their LoRA and trl settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

from pydantic import Field, model_validator

from trainer.config.base import Settings
from trainer.train.run_dir import STAGES

#: `base: default` trains on the built-in default aligner's model (SmolLM2-135M-Instruct).
DEFAULT_BASE = "default"


class TrainConfig(Settings):
    """`ma-train train`: the three SFT stages, each continuing from the previous one.

    Defaults follow the paper where they fit one device (lr 1e-5 for full fine-tuning, 2 epochs,
    warm-up ratio 0.05, cosine schedule, max length 2048); LoRA takes a higher default lr (2e-4).
    """

    base: str
    """The base causal LM (hub id or local folder); `default` = the built-in SmolLM2-135M-Instruct."""
    data: str
    """The folder written by `ma-train data build`."""
    out: str
    """RUN_DIR: final merged model + tokenizer + metaaligner.json; stages/<stage>/ per stage."""
    stage: Literal["warmup", "equal", "preference", "all"] = "all"
    """warmup, equal, preference, or all (in that order)."""
    lora: bool = True
    """LoRA (one adapter trained through all stages); --no-lora for full fine-tuning."""
    lora_r: int = Field(16, ge=1)
    """LoRA rank."""
    lora_alpha: int = Field(32, ge=1)
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0)
    """Dropout on the LoRA branch."""
    lora_targets: tuple[str, ...] = ("all-linear",)
    """Module names LoRA wraps (repeatable); 'all-linear' wraps every linear layer but the output head."""
    learning_rate: Optional[float] = Field(None, gt=0.0)
    """Peak learning rate; default 2e-4 with LoRA, 1e-5 (the paper's) for full fine-tuning."""
    epochs: float = Field(2.0, gt=0.0)
    """Epochs per stage."""
    stage_epochs: dict[Literal["warmup", "equal", "preference"], Annotated[float, Field(gt=0.0)]] = {}
    """STAGE=EPOCHS: epochs for one stage in place of `epochs` (repeatable), e.g. preference=2."""
    stage_learning_rate: dict[Literal["warmup", "equal", "preference"], Annotated[float, Field(gt=0.0)]] = {}
    """STAGE=LR: peak learning rate for one stage in place of `learning_rate` (repeatable)."""
    max_steps: int = -1
    """Stop each stage after this many optimizer steps (-1: run the epochs)."""
    batch_size: int = Field(4, ge=1)
    """Per-device batch size; effective batch = batch_size × grad_accum × devices."""
    grad_accum: int = Field(1, ge=1)
    """Gradient accumulation steps."""
    max_length: int = Field(2048, ge=1)
    """Rows are cut to this many tokens."""
    warmup_ratio: float = Field(0.05, ge=0.0, lt=1.0)
    """Share of each stage's steps spent warming the learning rate up."""
    lr_scheduler: str = "cosine"
    """A transformers scheduler name (cosine, linear, constant, ...)."""
    weight_decay: float = Field(0.0, ge=0.0)
    """AdamW weight decay."""
    bf16: Optional[bool] = None
    """bf16 autocast; default: on when a CUDA device supports it (on CPUs with AMX/AVX512-BF16 it
    is 1.5-2x faster too)."""
    activation_checkpointing: bool = False
    """Recompute activations in the backward pass (less memory, slower)."""
    resume: bool = False
    """Skip finished stages and resume the unfinished one from its last checkpoint."""
    save_steps: int = Field(500, ge=1)
    """Checkpoint every this many steps (what --resume continues from)."""
    save_total_limit: int = Field(2, ge=1)
    """Checkpoints kept per stage."""
    logging_steps: int = Field(10, ge=1)
    """Log the loss every this many steps."""
    seed: int = 0
    """Seeds initialisation and batch order."""
    sampling: Literal["random", "group_by_length"] = "random"
    """Batch order: random, or group_by_length (rows of similar length together: less padding,
    faster on CPU; the order is still seeded)."""

    @model_validator(mode="after")
    def _out_apart(self) -> "TrainConfig":
        """RUN_DIR is emptied per stage: it must not hold, or be inside, the base or the data."""
        out = Path(self.out).expanduser().resolve()
        for name in ("base", "data"):
            other = Path(getattr(self, name)).expanduser()
            if not other.exists():
                continue  # a hub id, or data still to be built
            other = other.resolve()
            if out == other or out in other.parents or other in out.parents:
                raise ValueError(
                    f"`out` {self.out!r} overlaps `{name}` {getattr(self, name)!r}; training would "
                    f"overwrite it. Give RUN_DIR a folder of its own, e.g. --out runs/my-aligner."
                )
        return self

    @property
    def stages(self) -> tuple[str, ...]:
        return STAGES if self.stage == "all" else (self.stage,)

    @property
    def lr(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 2e-4 if self.lora else 1e-5

    def epochs_for(self, stage: str) -> float:
        return self.stage_epochs.get(stage, self.epochs)

    def lr_for(self, stage: str) -> float:
        return self.stage_learning_rate.get(stage, self.lr)
