"""The base of every verb's settings model, and what several verbs' settings share."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

PromptFormat = Literal["hh-rlhf", "ultrafeedback", "imhi"]


class Settings(BaseModel):
    """Frozen, unknown keys refused, attribute docstrings as help."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)
