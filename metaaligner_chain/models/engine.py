"""From a runnable's model settings to its prompt format and its loaded engine.

`model=None` means the built-in default aligner: on llama.cpp the shipped adapter folded into one
F16 GGUF, on transformers that GGUF dequantized to a plain folder (each built once, no adapter at
load). Any other model is loaded as given; its prompt format comes from its own metadata (or its
adapter's), else from the released checkpoints' naming.
"""

from __future__ import annotations

import logging
from typing import Any

from metaaligner_chain.backends import choose_backend, get_backend
from metaaligner_chain.backends.base import Backend
from metaaligner_chain.models.metadata import prompt_format_from_name, read_metadata

logger = logging.getLogger("metaaligner_chain")


def prompt_format_of(model: str | None, backend_options: dict[str, Any]) -> str | None:
    """The prompt format `model` was trained with, as far as its files or name tell; else None."""
    if model is None:
        from metaaligner_chain.models.defaults import DEFAULT_PROMPT_FORMAT

        return DEFAULT_PROMPT_FORMAT
    adapter = backend_options.get("lora_path") or backend_options.get("adapter")
    return (
        (read_metadata(adapter).get("prompt_format") if adapter else None)
        or read_metadata(model).get("prompt_format")
        or prompt_format_from_name(model)
    )


def load_engine(model: str | None, backend: str, backend_options: dict[str, Any]) -> Backend:
    """The shared, loaded engine for these settings (`model=None`: the built-in default)."""
    if model is not None:
        return get_backend(choose_backend(model, backend), model, **backend_options)
    from metaaligner_chain.models.defaults import (
        default_aligner_gguf,
        default_aligner_hf_dir,
        default_backend_options,
        default_gguf_path,
        default_hf_model_dir,
    )

    base = str(default_gguf_path())
    kind = choose_backend(base, backend)
    if kind == "transformers":  # dequantized copies, built once, not a GGUF every load
        if "adapter" in backend_options:  # the base with the caller's adapter, or none
            return get_backend(kind, str(default_hf_model_dir()), **backend_options)
        return get_backend(kind, str(default_aligner_hf_dir()), **backend_options)
    if "lora_path" not in backend_options:  # the adapter merged into one F16 model
        try:
            merged = default_aligner_gguf()
        except Exception as exc:  # e.g. no `gguf` package: apply the adapter at run time
            logger.warning("could not build the merged default aligner (%s); applying its "
                           "adapter at run time instead", exc)
        else:
            return get_backend(kind, str(merged), **backend_options)
    # the shipped adapter, unless the options say otherwise
    return get_backend(kind, base, **{**default_backend_options(kind), **backend_options})
