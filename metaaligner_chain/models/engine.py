"""From a runnable's model settings to its prompt format and its loaded engine.

`model=None` means the built-in default aligner, in the form its engine loads (each engine's
`default_aligner`: on llama.cpp the shipped adapter folded into one F16 GGUF, on transformers that
GGUF dequantized to a plain folder). Any other model is loaded as given; its prompt format comes
from its own metadata (or its adapter's), else from the released checkpoints' naming. A served
model (`base_url`, or an http(s) URL as `model`) has no files here: only its served name can tell.
A model that cannot be loaded (or a server that cannot be reached) is an `AlignerConfigError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from metaaligner_chain.backends import choose_backend, engine_package, get_backend, is_url
from metaaligner_chain.backends.base import AlignerConfigError, Backend
from metaaligner_chain.models.metadata import prompt_format_from_name, read_metadata
from metaaligner_chain.objectives import check_prompt_format, keyed_by_objective


def check_setup(model: str | None, backend: str, base_url: str | None, prompt_format: str | None,
                backend_options: dict[str, Any]) -> str | None:
    """The prompt format in use (`prompt_format` if given, else the model's; None when unknown),
    after checking that the engine exists, a local `model` exists and a given `prompt_format` does
    not contradict the model's own metadata; each mistake is a `ValueError` naming the fix."""
    choose_backend(model, backend, base_url)
    if model is not None and _looks_local(model) and not Path(model).expanduser().exists():
        raise ValueError(
            f"`model` is {model!r}, which does not exist. Pass an existing model directory "
            "or .gguf file, a hub id, or model=None for the built-in default."
        )
    found = resolved_prompt_format(model, prompt_format, backend_options)
    trained = prompt_format and trained_prompt_format(model, backend_options)
    if trained and found != check_prompt_format(trained):  # a given one contradicts it
        raise ValueError(
            f"`prompt_format` is {prompt_format!r} but model "
            f"{model or 'built-in default'!r} was trained with {trained!r} (its "
            f"metaaligner metadata says so). Pass prompt_format={trained!r}, or leave it out."
        )
    return found


def resolved_prompt_format(model: str | None, prompt_format: str | None,
                           backend_options: dict[str, Any]) -> str | None:
    """`prompt_format` when given, else the one `model`'s metadata or name tells, else None."""
    if prompt_format is not None:
        return check_prompt_format(prompt_format)
    found = prompt_format_of(model, backend_options)
    return check_prompt_format(found) if found else None


def required_prompt_format(model: str | None, found: str | None) -> str:
    """`found`, the prompt format in use; a `ValueError` saying to pass one when it is None."""
    if found is None:
        raise ValueError(
            f"cannot tell the prompt format of model {model!r}: its name has none of "
            "HH-RLHF/UltraFeedback/IMHI and no metaaligner metadata was found with it. Pass "
            "prompt_format='hh-rlhf', 'ultrafeedback' or 'imhi'."
        )
    return found


def _looks_local(model: str) -> bool:
    return model.startswith((".", "/", "~")) or model.lower().endswith(".gguf") or Path(model).exists()


def prompt_format_of(model: str | None, backend_options: dict[str, Any]) -> str | None:
    """The prompt format `model` was trained with, as far as its files or name tell; else None.

    For a server, the served model's name alone tells (``MetaAligner-HH-RLHF-1.1B`` → hh-rlhf);
    a name that does not raises `ValueError` saying to pass `prompt_format`.
    """
    base_url = backend_options.get("base_url")
    if base_url or is_url(model):
        found = None if model is None or is_url(model) else prompt_format_from_name(model)
        if found is None:
            raise ValueError(
                f"the aligner is served (`model` is {model!r}, `base_url` is {base_url!r}) and "
                "its prompt format cannot be read from a server: pass prompt_format='hh-rlhf', "
                "'ultrafeedback' or 'imhi' (the format the served checkpoint was trained with), "
                "or serve it under its released name (e.g. MetaAligner/MetaAligner-HH-RLHF-1.1B)."
            )
        return found
    return trained_prompt_format(model, backend_options) or prompt_format_from_name(model)


def trained_prompt_format(model: str | None, backend_options: dict[str, Any]) -> str | None:
    """The prompt format `model`'s own files record (its adapter's metadata, else its own; the
    built-in default's is known), not guessed from a name; None when they record none, or the
    model is served."""
    found = recorded(model, backend_options, "prompt_format")
    if found or model is not None or backend_options.get("base_url"):
        return found
    from metaaligner_chain.models.defaults import DEFAULT_PROMPT_FORMAT

    return DEFAULT_PROMPT_FORMAT


def recommended_keep_margin(
    model: str | None, backend_options: dict[str, Any]
) -> float | dict[str, float] | None:
    """The `keep_margin` `model`'s metadata records (its adapter's, else its own; the built-in
    default's is shipped with its adapter): one margin, or one per objective key with ``"*"`` for
    the rest; None when none is recorded or the model is served."""
    found = recorded(model, backend_options, "keep_margin")
    if isinstance(found, dict):
        margins = {key: float(margin) for key, margin in found.items()}
        return keyed_by_objective(margins, "keep_margin (in the model's metaaligner.json)")
    return None if found is None else float(found)


def recommended_candidates(model: str | None, backend_options: dict[str, Any]) -> int:
    """How many candidates `model`'s metadata records (`MetaAlignerRunnable.candidates`); 1 when
    none is recorded or the model is served."""
    found = recorded(model, backend_options, "candidates")
    return 1 if found is None else int(found)


def recommended_original_margin(model: str | None, backend_options: dict[str, Any]) -> float | None:
    """The `MetaAlignerRunnable.original_margin` `model`'s metadata records; None (off) when none
    is recorded or the model is served."""
    found = recorded(model, backend_options, "original_margin")
    return None if found is None else float(found)


def recorded(model: str | None, backend_options: dict[str, Any], key: str) -> Any:
    """`key` of the metadata the aligner's own files record: its adapter's (`lora_path` or
    `adapter`; for the built-in default, the shipped one), else its model's; None when neither
    records it, or the aligner is served."""
    if backend_options.get("base_url") or is_url(model):
        return None
    adapter = backend_options.get("lora_path") or backend_options.get("adapter")
    if adapter is None and model is None:
        from metaaligner_chain.models.defaults import ADAPTER_DIR

        adapter = ADAPTER_DIR
    for source in (adapter, model):
        found = read_metadata(source).get(key) if source else None
        if found is not None:
            return found
    return None


def load_engine(model: str | None, backend: str, backend_options: dict[str, Any]) -> Backend:
    """The shared, loaded engine for these settings (`model=None`: the built-in default, or the
    one model a server at `base_url` serves). Whatever stops it from loading (no such model, a
    missing extra, a broken file, no server) is raised as an `AlignerConfigError` saying so."""
    kind = choose_backend(model, backend, backend_options.get("base_url"))
    served = backend_options.get("base_url") or is_url(model)
    name = repr(model) if model else "the server's one model" if served else "the built-in default"
    try:
        if model is None and not backend_options.get("base_url"):
            model, backend_options = engine_package(kind).default_aligner(backend_options)
        return get_backend(kind, model, **backend_options)
    except AlignerConfigError:
        raise
    except Exception as exc:
        raise AlignerConfigError(
            f"the aligner cannot be set up ({kind} backend, model {name}): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
