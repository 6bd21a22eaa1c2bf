"""Every `ma-train` setting, declared once: one pydantic model per verb, in the module of its step
(`data`, `train`, `export`, `evaluate`; their base model in `base`), all importable from here.

A field's name is its recipe key and its command-line option (`learning_rate` → `--learning-rate`),
its docstring is the option's help, and its type and bounds are checked by pydantic when a recipe
or the flags are read (`trainer.options` builds the Typer commands from these models). A recipe
file has one section per verb (`score`, `data`, `train`, `export`, `eval`, the fields of `Recipe`;
read and checked by `trainer.recipe`); `ma-train run` runs the sections it finds in that order.
"""

from __future__ import annotations

from typing import Optional

from trainer.config.base import PromptFormat, Settings
from trainer.config.data import (
    DEFAULT_PROMPT_FORMAT,
    DataConfig,
    DataFormat,
    ScoreConfig,
)
from trainer.config.evaluate import EvalConfig
from trainer.config.export import ExportConfig, GgufConfig, GgufLoraConfig, MergeConfig
from trainer.config.train import DEFAULT_BASE, STAGES, TrainConfig

__all__ = [
    "DEFAULT_BASE", "DEFAULT_PROMPT_FORMAT", "STAGES", "DataConfig", "DataFormat",
    "EvalConfig", "ExportConfig", "GgufConfig", "GgufLoraConfig", "MergeConfig", "PromptFormat",
    "Recipe", "ScoreConfig", "Settings", "TrainConfig",
]


class Recipe(Settings):
    """A whole `ma-train run`: optional scoring, data build, training, export, evaluation."""

    score: Optional[ScoreConfig] = None
    data: Optional[DataConfig] = None
    train: Optional[TrainConfig] = None
    export: Optional[ExportConfig] = None
    eval: Optional[EvalConfig] = None
