"""Settings of `ma-train eval`: which held-out set, which aligner, which judges, and the checks
that every setting given fits the kind of set."""

from __future__ import annotations

from typing import Any, Optional

from pydantic import Field, field_validator, model_validator

from trainer.config.base import PromptFormat, Settings

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
