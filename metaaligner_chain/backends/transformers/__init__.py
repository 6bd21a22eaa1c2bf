"""The transformers engine: a hub id, local directory or GGUF (dequantized) run by Hugging Face
transformers (loaded by `loading`), with copy-aware drafting and prefix reuse in its own decoding
loop (`drafting`)."""

from __future__ import annotations

from typing import Any

from metaaligner_chain.backends.transformers.backend import TransformersBackend
from metaaligner_chain.backends.transformers.loading import pick_device, pick_dtype

__all__ = ["TransformersBackend", "default_aligner", "load", "pick_device", "pick_dtype"]


def load(model: str, **options: Any) -> TransformersBackend:
    return TransformersBackend(model, **options)


def default_aligner(options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The built-in default as a plain folder: the adapter already in its weights, or, when the
    caller brings an `adapter` of their own, the base alone (each dequantized once, cached)."""
    from metaaligner_chain.models.defaults import default_aligner_hf_dir, default_hf_model_dir

    if "adapter" in options:
        return str(default_hf_model_dir()), options
    return str(default_aligner_hf_dir()), options


def adapter_options() -> dict[str, str]:
    """Options that would apply the shipped adapter at load: none, `default_aligner` has it merged."""
    return {}
