"""Engines behind one small `Backend` protocol, loaded lazily and shared per process.

`get_backend(kind, model, **options)` returns one loaded backend per (kind, model, options), even
when several runnables or configured calls ask for it; heavy libraries load on first use only.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from metaaligner_chain.backends.base import (
    Backend,
    Generation,
    GenerationSettings,
    PromptTooLongError,
)

__all__ = [
    "BACKENDS",
    "Backend",
    "Generation",
    "GenerationSettings",
    "PromptTooLongError",
    "choose_backend",
    "get_backend",
]

BACKENDS = ("transformers", "llama.cpp")

_loaded: dict[tuple, Backend] = {}
_locks: dict[tuple, threading.Lock] = {}
_guard = threading.Lock()


def choose_backend(model: str, backend: str = "auto") -> str:
    """`backend` if given; otherwise llama.cpp for a `.gguf` file, transformers for the rest."""
    if backend == "auto":
        return "llama.cpp" if str(model).lower().endswith(".gguf") else "transformers"
    if backend not in BACKENDS:
        raise ValueError(f"`backend` is {backend!r}; choose 'auto' or one of {', '.join(BACKENDS)}.")
    return backend


def _load(kind: str, model: str, options: dict[str, Any]) -> Backend:
    if kind == "transformers":
        from metaaligner_chain.backends.huggingface import TransformersBackend

        return TransformersBackend(model, **options)
    from metaaligner_chain.backends.llamacpp import LlamaCppBackend

    return LlamaCppBackend(model, **options)


def get_backend(kind: str, model: str | Path, **options: Any) -> Backend:
    """The shared, loaded backend for (`kind`, `model`, `options`); loads it on first request."""
    key = (kind, str(model), tuple(sorted((k, repr(v)) for k, v in options.items())))
    with _guard:
        if key in _loaded:
            return _loaded[key]
        lock = _locks.setdefault(key, threading.Lock())
    with lock:  # one load per key, even when many threads ask at once
        if key not in _loaded:
            _loaded[key] = _load(kind, str(model), options)
    return _loaded[key]


def clear_backends() -> None:
    """Forget every loaded backend (their memory is freed once nothing else holds them)."""
    with _guard:
        _loaded.clear()
        _locks.clear()
