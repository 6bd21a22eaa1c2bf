"""A YAML recipe read and checked: one section per verb (the fields of `config.Recipe`), each
validated by its settings model, pydantic's findings rewritten as errors that name the key, its
value and the fix. `ma-train run` reads a whole recipe; a verb's `--config` reads its section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from trainer.config import Recipe, Settings

SECTIONS: dict[str, type[Settings]] = {
    name: field.annotation.__args__[0] for name, field in Recipe.model_fields.items()
}


def build(cls: type[Settings], values: dict[str, Any], where: str) -> Any:
    """`cls(**values)`, with pydantic's findings as one error naming each key, its value and the fix."""
    try:
        return cls.model_validate(values)
    except ValidationError as err:
        raise ValueError(f"{where}: " + "; ".join(_problem(e, cls) for e in err.errors())) from None


def _problem(error: dict, cls: type[Settings]) -> str:
    loc = [str(part) for part in error["loc"]]
    if loc and loc[-1] == "[key]":  # a mapping's key, e.g. a stage name in stage_epochs
        loc = [loc[0], "key"]
    key = ".".join(loc)
    if error["type"] == "missing":
        return f"`{key}` is missing (required)"
    if error["type"] == "extra_forbidden":
        return f"`{key}` is not a setting; known keys: {', '.join(cls.model_fields)}"
    if error["type"] == "value_error":  # our own checks write the whole sentence
        return error["msg"].removeprefix("Value error, ")
    message = error["msg"].removeprefix("Input should be ")
    return f"`{key}` is {error['input']!r}; it should be {message}"


def read_recipe(path: str | Path) -> dict[str, dict[str, Any]]:
    """The raw sections of a YAML recipe, each a mapping of settings."""
    import yaml

    content = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(content, dict):
        raise ValueError(f"{path} must be a mapping with sections {', '.join(SECTIONS)}.")
    unknown = sorted(set(content) - set(SECTIONS))
    if unknown:
        raise ValueError(
            f"{path} has unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}."
        )
    for name, value in content.items():
        if value is not None and not isinstance(value, dict):
            raise ValueError(f"{path}: section `{name}` must be a mapping of settings.")
    return {name: value for name, value in content.items() if value}


def read_section(path: str | Path, section: str) -> dict[str, Any]:
    """The raw `section` mapping of a YAML recipe (empty when the file has no such section)."""
    return read_recipe(path).get(section, {})


def load_recipe(path: str | Path) -> Recipe:
    """Read and check a YAML recipe; every key must be a setting of its section's verb."""
    sections = {name: build(SECTIONS[name], values, f"{path} section `{name}`")
                for name, values in read_recipe(path).items()}
    if not sections:
        raise ValueError(f"{path} has no {', '.join(f'`{s}`' for s in SECTIONS)} section; nothing to run.")
    return Recipe(**sections)
