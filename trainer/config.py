"""Settings for `ma-train`, one frozen dataclass per step; YAML recipes and CLI flags map onto them.

A recipe file has one section per step (`data`, `score`, `train`); each key is a field below.
Flags override the file: `merge(config, **flags)` replaces only the flags that were given.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATA_FORMATS = ("ultrafeedback", "hh-rlhf", "helpsteer", "generic")
STAGES = ("warmup", "equal", "preference")
#: `base: default` trains on the built-in default aligner's model (SmolLM2-135M-Instruct).
DEFAULT_BASE = "default"
#: The prompt format each dataset format is written with, unless `prompt_format` is given.
DEFAULT_PROMPT_FORMAT = {
    "ultrafeedback": "ultrafeedback",
    "hh-rlhf": "hh-rlhf",
    "helpsteer": "ultrafeedback",
    "generic": "ultrafeedback",
}


@dataclass(frozen=True)
class DataConfig:
    """`ma-train data build`: raw preference data → warm-up / equal / preference rows."""

    input: str
    """A local JSONL/JSON/CSV/Parquet file, or a dataset id loaded with `datasets`."""
    format: str
    """How the input is shaped: ultrafeedback, hh-rlhf, helpsteer or generic."""
    out: str
    """Folder for warmup.jsonl, equal.jsonl, preference.jsonl, val/ and summary.json."""
    prompt_format: str | None = None
    """Prompt format of the rows; defaults to the dataset format's own (see DEFAULT_PROMPT_FORMAT)."""
    seed: int = 0
    """Seeds the objective order of every row, the warm-up sample and the validation split."""
    warmup_fraction: float = 0.2
    """Share of the equal rows copied into warm-up rows whose target is the input answer."""
    tie_tolerance: float = 0.0
    """Two scores within this distance are a tie for that objective."""
    val_fraction: float = 0.05
    """Share of the distinct queries held out for validation (split by query)."""
    objectives: tuple[str, ...] = ()
    """Objective keys to use; empty = every objective the data scores."""
    descriptions: dict[str, str] = field(default_factory=dict)
    """Descriptions ('Name: description') for objective keys the prompt format does not know."""
    split: str = "train"
    """Split to read when `input` is a dataset id."""

    def __post_init__(self) -> None:
        if self.format not in DATA_FORMATS:
            raise ValueError(
                f"`format` is {self.format!r}; choose one of {', '.join(DATA_FORMATS)}."
            )
        for name in ("warmup_fraction", "val_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"`{name}` is {value}; give a fraction in [0, 1), e.g. 0.1.")
        if self.tie_tolerance < 0:
            raise ValueError(f"`tie_tolerance` is {self.tie_tolerance}; give 0 or more.")

    @property
    def resolved_prompt_format(self) -> str:
        return self.prompt_format or DEFAULT_PROMPT_FORMAT[self.format]


@dataclass(frozen=True)
class ScoreConfig:
    """`ma-train data score`: label every response per objective with a reward model."""

    input: str
    """Raw data in one of the dataset formats (scores may be missing)."""
    format: str
    """How the input is shaped: ultrafeedback, hh-rlhf, helpsteer or generic."""
    out: str
    """A generic-format JSONL with the new scores (build it with `--format generic`)."""
    models: dict[str, str] = field(default_factory=dict)
    """Objective key → sequence-classification reward model (hub id or local folder)."""
    round_to: float = 0.1
    """Rewards are rounded to this step before z-normalisation, as the paper did for HH-RLHF."""
    batch_size: int = 8
    max_length: int = 512
    split: str = "train"

    def __post_init__(self) -> None:
        if self.format not in DATA_FORMATS:
            raise ValueError(
                f"`format` is {self.format!r}; choose one of {', '.join(DATA_FORMATS)}."
            )
        if not self.models:
            raise ValueError(
                "`models` is empty; name one reward model per objective, e.g. "
                "--objective harmlessness=OpenAssistant/reward-model-deberta-v3-large-v2."
            )


@dataclass(frozen=True)
class TrainConfig:
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
    stage: str = "all"
    """warmup, equal, preference, or all (in that order)."""
    lora: bool = True
    """LoRA (one adapter trained through all stages) instead of full fine-tuning."""
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("all-linear",)
    """Module names LoRA wraps; 'all-linear' wraps every linear layer but the output head."""
    learning_rate: float | None = None
    """None = 2e-4 with LoRA, 1e-5 (the paper's) for full fine-tuning."""
    epochs: float = 2.0
    max_steps: int = -1
    """Stop each stage after this many optimizer steps (-1: run the epochs)."""
    batch_size: int = 4
    """Per-device batch size; effective batch = batch_size × grad_accum × devices."""
    grad_accum: int = 1
    max_length: int = 2048
    warmup_ratio: float = 0.05
    lr_scheduler: str = "cosine"
    weight_decay: float = 0.0
    bf16: bool | None = None
    """None = bf16 when a CUDA device supports it, else fp32."""
    gradient_checkpointing: bool = False
    resume: bool = False
    """Skip finished stages and resume the unfinished one from its last checkpoint."""
    save_steps: int = 500
    save_total_limit: int = 2
    logging_steps: int = 10
    seed: int = 0
    sampling: str = "random"
    """Batch order: random, or group_by_length (rows of similar length together: less padding,
    faster on CPU; the order is still seeded)."""

    def __post_init__(self) -> None:
        if self.stage not in (*STAGES, "all"):
            raise ValueError(f"`stage` is {self.stage!r}; choose one of {', '.join(STAGES)}, all.")
        for name in ("batch_size", "grad_accum", "max_length", "lora_r", "save_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` is {getattr(self, name)}; give a positive integer.")

    @property
    def stages(self) -> tuple[str, ...]:
        return STAGES if self.stage == "all" else (self.stage,)

    @property
    def lr(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 2e-4 if self.lora else 1e-5


@dataclass(frozen=True)
class ExportConfig:
    """The `export` step of a recipe: a finished LoRA run as a folder to ship."""

    run: str
    """RUN_DIR of the finished run."""
    adapter_dir: str
    """Folder for the fp16 peft adapter, `adapter.gguf` and `metaaligner.json` (replaced files)."""
    base: str | None = None
    """The base model folder the adapter was trained on; default: the run's `base_model`."""
    base_name: str | None = None
    """Name written in place of the training machine's base path."""
    recipe: str | None = None
    """Recorded in `metaaligner.json` as the recipe that made the adapter."""


@dataclass(frozen=True)
class EvalConfig:
    """The `eval` step of a recipe: written rewrite items (with gold rewrites and checks) aligned
    and judged per objective (`trainer.rewrite_eval`)."""

    data: str
    """A JSONL file, or a folder of them, in the corpus format (examples/eval/heldout/)."""
    out: str
    """Folder for results.json, items.jsonl, aligned.jsonl (resumable) and runs.jsonl."""
    aligner: str = "default"
    """'default' (the built-in aligner) or a model path."""
    prompt_format: str | None = None
    max_new_tokens: int = 384
    label: str = "held-out"
    """Recorded with every run in runs.jsonl (how often this set was looked at)."""


@dataclass(frozen=True)
class Recipe:
    """A whole `ma-train run`: optional scoring, data build, training, export, evaluation."""

    data: DataConfig | None = None
    score: ScoreConfig | None = None
    train: TrainConfig | None = None
    export: ExportConfig | None = None
    eval: EvalConfig | None = None


_SECTIONS = {"data": DataConfig, "score": ScoreConfig, "train": TrainConfig,
             "export": ExportConfig, "eval": EvalConfig}


def build(cls: type, values: dict[str, Any], where: str) -> Any:
    """`cls(**values)` with an error naming unknown or missing keys and the file section."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(
            f"{where} has unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(names))}."
        )
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ValueError(f"{where} is missing required key(s): {', '.join(missing)}.")
    coerced = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**coerced)


def merge(config: Any, **flags: Any) -> Any:
    """A copy of `config` with the flags that were given (not None) replacing its values."""
    return dataclasses.replace(config, **{k: v for k, v in flags.items() if v is not None})


def read_section(path: str | Path, section: str) -> dict[str, Any]:
    """The raw `section` mapping of a YAML recipe (empty when the file has no such section)."""
    import yaml

    text = Path(path).read_text()
    content = yaml.safe_load(text) or {}
    if not isinstance(content, dict):
        raise ValueError(f"{path} must be a mapping with sections data/score/train.")
    unknown = sorted(set(content) - set(_SECTIONS))
    if unknown:
        raise ValueError(
            f"{path} has unknown section(s) {', '.join(unknown)}; known: {', '.join(_SECTIONS)}."
        )
    value = content.get(section) or {}
    if not isinstance(value, dict):
        raise ValueError(f"{path}: section `{section}` must be a mapping of settings.")
    return value


def load_recipe(path: str | Path) -> Recipe:
    """Read and check a YAML recipe; every key must be a field of its section's dataclass."""
    sections = {
        name: build(cls, read_section(path, name), f"{path} section `{name}`")
        for name, cls in _SECTIONS.items()
        if read_section(path, name)
    }
    if not sections:
        raise ValueError(f"{path} has no {', '.join(f'`{s}`' for s in _SECTIONS)} section; nothing to run.")
    return Recipe(**sections)
