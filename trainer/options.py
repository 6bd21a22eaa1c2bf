"""Typer commands generated from the settings models: a field is declared once, in
`trainer.config`, and appears as a recipe key and as an option with its docstring as help
(in the way trl's `TrlParser` derives its arguments from dataclasses).

Options are named after fields (`learning_rate` → `--learning-rate`); booleans get `--x/--no-x`;
tuple fields repeat (`--objectives a --objectives b`); mapping fields take KEY=VALUE and repeat
(a field's `metavar` in `json_schema_extra` names the form in help and errors, e.g. objective=MODEL).
`--config RECIPE.yaml` reads the verb's section first and the flags given override it; every
value is then validated by the model.
"""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
from pydantic.fields import FieldInfo

from trainer.config import Settings
from trainer.recipe import build, read_section


def command(
    cls: type[Settings], section: str | None, verb: str, run: Callable[[Any], Any]
) -> Callable[..., Any]:
    """A Typer callback with one option per field of `cls` (plus --config when the settings are a
    recipe `section`) that validates the settings and calls `run(settings)`."""
    params = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                          annotation=_annotation(name, field))
        for name, field in cls.model_fields.items()
    ]
    if section is not None:
        params.append(inspect.Parameter(
            "config", inspect.Parameter.KEYWORD_ONLY, default=None,
            annotation=Annotated[Optional[Path], typer.Option(
                "--config", "-c", help=f"YAML recipe: its `{section}` section, under the flags given.")],
        ))

    def callback(**flags: Any) -> Any:
        path = flags.pop("config", None)
        values = read_section(path, section) if path else {}
        values.update(_given(cls, flags))
        return run(build(cls, values, f"`ma-train {verb}` (flags and --config)"))

    callback.__signature__ = inspect.Signature(params)  # what Typer reads
    summary = inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0].split(": ", 1)[-1]
    callback.__doc__ = summary[:1].upper() + summary[1:]
    callback.__name__ = verb.replace(" ", "_")
    return callback


def _annotation(name: str, field: FieldInfo) -> Any:
    kind = _plain(field.annotation)
    flag = "--" + name.replace("_", "-")
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    if extra.get("argument"):
        return Annotated[Optional[kind], typer.Argument(help=field.description, show_default=False)]
    decls = [f"{flag}/--no-{flag[2:]}"] if kind is bool else [flag]
    default = None if field.is_required() or field.default in (None, (), {}) else field.default
    help_text = (field.description or "") + (f" (default: {_shown(default)})" if default is not None else "")
    return Annotated[Optional[kind], typer.Option(*decls, help=help_text, show_default=False,
                                                  metavar=extra.get("metavar"))]


def _plain(annotation: Any) -> Any:
    """The command-line type of a field: Optional unwrapped, Literal → str, tuple/dict → list[str]."""
    origin = typing.get_origin(annotation := _unwrap(annotation))
    if origin is typing.Literal:
        return str
    if origin in (tuple, dict, list):
        return list[str]
    return annotation


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return " ".join(value)
    return str(value)


def _given(cls: type[Settings], flags: dict[str, Any]) -> dict[str, Any]:
    """The flags that were given, as the model's values (KEY=VALUE lists become mappings)."""
    values = {}
    for name, value in flags.items():
        if value is None or value == []:
            continue
        field = cls.model_fields[name]
        if typing.get_origin(_unwrap(field.annotation)) is dict:
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            value = pairs(value, "--" + name.replace("_", "-"), extra.get("metavar", "KEY=VALUE"))
        values[name] = value
    return values


def _unwrap(annotation: Any) -> Any:
    """`X` from `Optional[X]`; anything else as it is."""
    if typing.get_origin(annotation) is typing.Union:
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def pairs(items: list[str], flag: str, form: str = "KEY=VALUE") -> dict[str, str]:
    """`["k=v", ...]` → `{k: v}` (the one KEY=VALUE reader), with an error naming the flag and
    the `form` its values take (a field's `metavar`, e.g. objective=MODEL)."""
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"`{flag}` got {item!r}; write {form}, one per {flag}.")
        result[key.strip()] = value.strip()
    return result
