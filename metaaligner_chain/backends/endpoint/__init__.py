"""The endpoint engine: an aligner served by vLLM, TGI or llama.cpp's server, reached through its
OpenAI-compatible `/v1/completions` (`EndpointBackend`)."""

from __future__ import annotations

from typing import Any

from metaaligner_chain.backends.endpoint.backend import NEUTRAL_SAMPLING, EndpointBackend
from metaaligner_chain.backends.endpoint.server import API_KEY_ENV

__all__ = ["API_KEY_ENV", "NEUTRAL_SAMPLING", "EndpointBackend", "default_aligner", "load"]


def load(model: str | None, **options: Any) -> EndpointBackend:
    return EndpointBackend(model, **options)


def default_aligner(options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A server runs the model it was started with; there is no built-in default to load here."""
    raise ValueError(
        "the endpoint backend has no built-in default: pass base_url='http://host:port/v1' and "
        "model=<the served model's name> (or model=None to use the server's only model)."
    )


def adapter_options() -> dict[str, str]:
    return {}
