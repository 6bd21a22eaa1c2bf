"""Engines by name behind one small `Backend` protocol, loaded lazily and shared per process.

The registry maps a name to the package of its engine (`transformers/`, `llamacpp/`, `endpoint/`):
each has `load(model, **options) -> Backend` and `default_aligner(options) -> (model, options)`,
the built-in default in that engine's form. `get_backend(kind, model, **options)` returns one
loaded backend per (kind, model, options), even when several runnables or configured calls ask for
it; heavy libraries load on first use only. What an engine can do beyond completing prompts (stop
early on a prompt echo, draft, reuse prefixes, decode several prompts at once) it declares in its
`capabilities` (`base.Capabilities`); nothing outside an engine's package asks for its name.
"""

from __future__ import annotations

import importlib
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

from metaaligner_chain.backends.base import (
    AlignerConfigError,
    Backend,
    Capabilities,
    Generation,
    GenerationSettings,
    PromptTooLongError,
)

__all__ = [
    "BACKENDS",
    "AlignerConfigError",
    "Backend",
    "Capabilities",
    "Generation",
    "GenerationSettings",
    "PromptTooLongError",
    "choose_backend",
    "engine_package",
    "get_backend",
    "is_url",
    "register_backend",
]

#: name → the package of that engine (imported on first use).
_REGISTRY: dict[str, str] = {
    "transformers": "metaaligner_chain.backends.transformers",
    "llama.cpp": "metaaligner_chain.backends.llamacpp",
    "endpoint": "metaaligner_chain.backends.endpoint",
}
#: The names `backend=` accepts besides "auto".
BACKENDS = tuple(_REGISTRY)

_loaded: dict[tuple, Backend] = {}
_locks: dict[tuple, threading.Lock] = {}
_guard = threading.Lock()


def register_backend(name: str, package: str) -> None:
    """Make `backend=name` load through `package` (its `load` and `default_aligner`)."""
    global BACKENDS
    _REGISTRY[name] = package
    BACKENDS = tuple(_REGISTRY)


def is_url(model: str | None) -> bool:
    """Whether `model` is a server address (``http://`` or ``https://``) rather than a model."""
    return str(model or "").lower().startswith(("http://", "https://"))


def choose_backend(model: str | None, backend: str = "auto", base_url: str | None = None) -> str:
    """`backend` if given; otherwise the endpoint for a server (`base_url`, or an http(s) URL as
    `model`), llama.cpp for a `.gguf` file (or the built-in default, `model=None`), transformers
    for the rest."""
    served = bool(base_url) or is_url(model)
    if backend == "auto":
        if served:
            return "endpoint"
        return "llama.cpp" if model is None or str(model).lower().endswith(".gguf") else "transformers"
    if backend not in _REGISTRY:
        raise ValueError(f"`backend` is {backend!r}; choose 'auto' or one of {', '.join(_REGISTRY)}.")
    if served and backend != "endpoint":
        where = f"`base_url` is {base_url!r}" if base_url else f"`model` is the URL {model!r}"
        raise ValueError(
            f"{where} but `backend` is {backend!r}, which runs the model in this process. Pass "
            "backend='endpoint' (or 'auto') to use the server, or drop `base_url` and pass a "
            "local model."
        )
    if backend == "endpoint" and not served:
        raise ValueError(
            f"`backend` is 'endpoint' but no server is given (`model` is {model!r}, `base_url` is "
            "None). Pass base_url='http://host:port/v1' with model=<the served model's name>."
        )
    return backend


def engine_package(kind: str) -> ModuleType:
    """The package of engine `kind` (see the module docstring)."""
    if kind not in _REGISTRY:
        raise ValueError(f"`backend` is {kind!r}; choose one of {', '.join(_REGISTRY)}.")
    return importlib.import_module(_REGISTRY[kind])


def get_backend(kind: str, model: str | Path | None, **options: Any) -> Backend:
    """The shared, loaded backend for (`kind`, `model`, `options`); loads it on first request."""
    key = (kind, None if model is None else str(model),
           tuple(sorted((k, repr(v)) for k, v in options.items())))
    with _guard:
        if key in _loaded:
            return _loaded[key]
        lock = _locks.setdefault(key, threading.Lock())
    with lock:  # one load per key, even when many threads ask at once
        if key not in _loaded:
            load = engine_package(kind).load
            _loaded[key] = load(None if model is None else str(model), **options)
    return _loaded[key]


def clear_backends() -> None:
    """Forget every loaded backend (their memory is freed once nothing else holds them)."""
    with _guard:
        _loaded.clear()
        _locks.clear()
