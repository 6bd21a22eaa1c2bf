"""Every `ma-train` setting, declared once: one pydantic model per verb.

A field's name is its recipe key and its command-line option (`learning_rate` → `--learning-rate`),
its docstring is the option's help, and its type and bounds are checked by pydantic when a recipe
or the flags are read (`trainer.options` builds the Typer commands from these models). A recipe
file has one section per verb (`score`, `data`, `train`, `export`, `eval`, the fields of `Recipe`;
read and checked by `trainer.recipe`); `ma-train run` runs the sections it finds in that order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from trainer.train.run_dir import STAGES

DataFormat = Literal["ultrafeedback", "hh-rlhf", "helpsteer", "generic"]
PromptFormat = Literal["hh-rlhf", "ultrafeedback", "imhi"]
DATA_FORMATS: tuple[str, ...] = DataFormat.__args__
#: `base: default` trains on the built-in default aligner's model (SmolLM2-135M-Instruct).
DEFAULT_BASE = "default"
#: The prompt format each dataset format is written with, unless `prompt_format` is given.
DEFAULT_PROMPT_FORMAT = {
    "ultrafeedback": "ultrafeedback",
    "hh-rlhf": "hh-rlhf",
    "helpsteer": "ultrafeedback",
    "generic": "ultrafeedback",
}


class Settings(BaseModel):
    """Frozen, unknown keys refused, attribute docstrings as help."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class DataConfig(Settings):
    """`ma-train data build`: raw preference data → warm-up / equal / preference rows."""

    input: str = Field(json_schema_extra={"argument": True})
    """A local JSONL/JSON/CSV/Parquet file, a folder of *.jsonl, or a dataset id loaded with `datasets`."""
    format: DataFormat
    """How the input is shaped: ultrafeedback, hh-rlhf, helpsteer or generic."""
    out: str
    """Folder for warmup.jsonl, equal.jsonl, preference.jsonl, val/ and summary.json."""
    prompt_format: Optional[PromptFormat] = None
    """Prompt format of the rows; default: the dataset format's own (generic → ultrafeedback)."""
    seed: int = 0
    """Seeds the objective order of every row, the warm-up sample and the validation split."""
    warmup_fraction: float = Field(0.2, ge=0.0, le=1.0)
    """Share of the equal rows copied into warm-up rows whose target is the input answer (1.0:
    warm up on every equal row)."""
    tie_tolerance: float = Field(0.0, ge=0.0)
    """Two scores within this distance are a tie for that objective."""
    val_fraction: float = Field(0.05, ge=0.0, lt=1.0)
    """Share of the distinct queries held out for validation (split by query)."""
    objectives: tuple[str, ...] = ()
    """Objective keys to use (repeatable); empty = every objective the data scores."""
    descriptions: dict[str, str] = {}
    """KEY='Name: description' for objective keys the prompt format does not know (repeatable)."""
    split: str = "train"
    """Split to read when `input` is a dataset id."""
    skip_bad_rows: bool = False
    """Leave out rows that cannot be read or lack a field (each named, counted in summary.json)
    instead of stopping at the first."""

    @property
    def resolved_prompt_format(self) -> str:
        return self.prompt_format or DEFAULT_PROMPT_FORMAT[self.format]


class ScoreConfig(Settings):
    """`ma-train data score`: label every response per objective with a reward model."""

    input: str = Field(json_schema_extra={"argument": True})
    """Raw data in one of the dataset formats (scores may be missing)."""
    format: DataFormat
    """How the input is shaped: ultrafeedback, hh-rlhf, helpsteer or generic."""
    out: str
    """A generic-format JSONL with the new scores (build it with `--format generic`)."""
    models: dict[str, str] = Field(min_length=1)
    """OBJECTIVE=MODEL: a sequence-classification reward model (hub id or folder) per objective,
    e.g. harmlessness=OpenAssistant/reward-model-deberta-v3-large-v2 (repeatable)."""
    round_to: float = Field(0.1, gt=0.0)
    """Rewards are rounded to this step before z-normalisation, as the paper did for HH-RLHF."""
    batch_size: int = Field(8, ge=1)
    """Responses scored per forward pass."""
    max_length: int = Field(512, ge=1)
    """Tokens of query + response given to the reward model."""
    split: str = "train"
    """Split to read when `input` is a dataset id."""


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


class ExportConfig(Settings):
    """`ma-train export adapter`: a finished LoRA run as a folder to ship."""

    run: str = Field(json_schema_extra={"argument": True})
    """RUN_DIR of the finished run."""
    adapter_dir: str
    """Folder for `adapter.gguf` (f16 GGUF LoRA) and `metaaligner.json` (replaced files)."""
    base: Optional[str] = None
    """The base model folder the adapter was trained on; default: the run's `base_model`."""
    base_name: Optional[str] = None
    """Name written in place of the training machine's base path."""
    recipe: Optional[str] = None
    """Recorded in `metaaligner.json` as the recipe that made the adapter."""


class MergeConfig(Settings):
    """`ma-train merge`: merge a run's LoRA adapter into its base (or copy a full run) as a
    standalone model folder."""

    run: str = Field(json_schema_extra={"argument": True})
    """RUN_DIR from `ma-train train`."""
    out: str
    """MERGED_DIR to write (replaced if it is an earlier merge)."""
    base: Optional[str] = None
    """Base the LoRA was trained on (default: the run's recorded base_model)."""


class GgufConfig(Settings):
    """`ma-train export gguf`: convert a model folder to GGUF, with our prompt format and
    objectives in its metadata."""

    model: str = Field(json_schema_extra={"argument": True})
    """Model folder: MERGED_DIR, RUN_DIR or a base."""
    out: str
    """FILE.gguf to write."""
    quant: str = "f16"
    """f32, f16, bf16, q8_0 (converter) or q4_k_m, q5_k_m, q6_k, ... (llama.cpp quantizer)."""
    llama_cpp_dir: Optional[str] = None
    """A llama.cpp checkout or unpacked llama-cpp-python sdist holding the converters (default:
    the cache filled by `ma-train export fetch-converter`)."""
    pre_tokenizer: Optional[str] = None
    """llama.cpp BPE pre-tokenizer name for a tokenizer the converter does not know."""


class GgufLoraConfig(Settings):
    """`ma-train export gguf-lora`: convert a run's LoRA adapter to a GGUF LoRA, served as
    Llama(model_path=BASE.gguf, lora_path=OUT)."""

    run: str = Field(json_schema_extra={"argument": True})
    """RUN_DIR of a LoRA run."""
    base: str
    """BASE_DIR (Hugging Face folder) the adapter was trained on."""
    out: str
    """ADAPTER.gguf to write."""
    outtype: Literal["f32", "f16", "bf16", "q8_0"] = "f16"
    """Weight type of the GGUF LoRA."""
    llama_cpp_dir: Optional[str] = None
    """A llama.cpp checkout or unpacked llama-cpp-python sdist holding the converters (default:
    the cache filled by `ma-train export fetch-converter`)."""


#: `ma-train eval` settings that only rows judged per objective take.
_PER_OBJECTIVE = ("judge", "scorer", "policy", "limit", "bootstrap_rounds", "seed")


class EvalConfig(Settings):
    """`ma-train eval`: per-objective win rates of the aligned answers, do-no-harm figures, report.

    Two kinds of held-out set: written rewrite items, which name their own objectives and carry
    gold rewrites and checks (`trainer.evaluate.rewrites`); or, with `objectives`, rows of
    query and response judged per objective with bootstrap intervals and a plot
    (`trainer.evaluate.objectives`). The settings marked "with `objectives`" apply to the second.
    """

    data: str
    """Rewrite items: a JSONL file or a folder of them in the corpus format (examples/eval/heldout/,
    see trainer/EVAL.md); with `objectives`, a JSONL of {"query", "response", "golden"?}."""
    out: str
    """Output folder for results, report and plot (reused: finished work resumes)."""
    objectives: tuple[str, ...] = ()
    """Objective keys to judge the rows on, e.g. harmlessness,readability,length (comma-separated
    or repeated); leave out for rewrite items, which name their own."""
    aligner: str = "default"
    """'default' (the built-in aligner), a model path or hub id."""
    prompt_format: Optional[PromptFormat] = None
    """The aligner's prompt format; default: the one its files record."""
    max_new_tokens: Optional[int] = Field(None, ge=1)
    """Aligner output cap; default: 384 for rewrite items, the aligner's own with `objectives`."""
    judge: tuple[str, ...] = Field(("offline",), json_schema_extra={"metavar": "JUDGE|objective=JUDGE"})
    """'offline' (built-in proxy scorers) or a chat model as provider:model (e.g. openai:gpt-4o)
    for every objective; objective=JUDGE for one objective (repeatable; with `objectives`)."""
    scorer: dict[str, str] = Field({}, json_schema_extra={"metavar": "objective=MODEL"})
    """A Hugging Face reward or classifier model (folder or hub id) that judges one objective,
    as objective=MODEL (repeatable; with `objectives`)."""
    policy: Optional[str] = None
    """provider:model that writes each row's response first (with `objectives`)."""
    limit: Optional[int] = Field(None, ge=1)
    """Evaluate only the first N rows (with `objectives`)."""
    bootstrap_rounds: int = Field(2000, ge=1)
    """Bootstrap resamples for the confidence intervals (with `objectives`)."""
    seed: int = 0
    """Seeds the bootstrap resamples (with `objectives`)."""
    label: str = "held-out"
    """Recorded with every run of rewrite items in runs.jsonl (how often this set was looked at)."""

    @field_validator("objectives", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        """`harmlessness,length` (one flag or a recipe string) is two keys."""
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            return value
        return tuple(k.strip() for item in items for k in str(item).split(",") if k.strip())

    @field_validator("judge", mode="before")
    @classmethod
    def _one_judge(cls, value: Any) -> Any:
        """`judge: openai:gpt-4o` in a recipe is one judge."""
        return (value,) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _settings_fit_the_set(self) -> "EvalConfig":
        """One judge for every objective at most; no setting the chosen kind of set ignores."""
        shared = [j for j in self.judge if "=" not in j]
        if len(shared) > 1:
            raise ValueError(
                f"`judge` has {len(shared)} judges for every objective ({', '.join(shared)}); give "
                "one, and write objective=JUDGE for the others."
            )
        if self.objectives and "label" in self.model_fields_set:
            raise ValueError("`label` is recorded for rewrite items only; leave it out with `objectives`.")
        ignored = [f"`{name}`" for name in _PER_OBJECTIVE if name in self.model_fields_set]
        if ignored and not self.objectives:
            raise ValueError(
                f"{', '.join(ignored)} apply to rows judged per objective; name the `objectives` "
                "too (e.g. --objectives harmlessness,length), or leave them out for rewrite items, "
                "which are judged by their gold rewrites and checks."
            )
        return self


class Recipe(Settings):
    """A whole `ma-train run`: optional scoring, data build, training, export, evaluation."""

    score: Optional[ScoreConfig] = None
    data: Optional[DataConfig] = None
    train: Optional[TrainConfig] = None
    export: Optional[ExportConfig] = None
    eval: Optional[EvalConfig] = None
