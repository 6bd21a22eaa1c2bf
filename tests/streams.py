"""Test helper: run a backend stream to the end, keeping its pieces and its returned Generation."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any


def drain(stream: Generator[str, None, Any]) -> tuple[list[str], Any]:
    """(pieces, value) of a generator that returns a value (``StopIteration.value``)."""
    pieces = []
    while True:
        try:
            pieces.append(next(stream))
        except StopIteration as stop:
            return pieces, stop.value
