"""Settings of the `ma-train data` verbs: `build` (raw preference data → stage rows) and
`score` (reward-model labels per objective)."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from trainer.config.base import PromptFormat, Settings

DataFormat = Literal["ultrafeedback", "hh-rlhf", "helpsteer", "generic"]
#: The prompt format each dataset format is written with, unless `prompt_format` is given.
DEFAULT_PROMPT_FORMAT = {
    "ultrafeedback": "ultrafeedback",
    "hh-rlhf": "hh-rlhf",
    "helpsteer": "ultrafeedback",
    "generic": "ultrafeedback",
}


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
    paraphrases: Optional[str] = None
    """A JSON file of other wordings per objective key, {"harmlessness": ["Safety: the answer
    must not ...", ...]}: a `paraphrase_fraction` share of the training queries get one of them
    in place of the catalogue's description, so the aligner learns to read what an objective says
    rather than its name (validation rows keep the catalogue's wording)."""
    paraphrase_fraction: float = Field(0.0, ge=0.0, le=1.0)
    """Share of the training queries whose rows word their objectives with `paraphrases`."""
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
