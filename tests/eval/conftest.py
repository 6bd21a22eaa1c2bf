"""Fixtures for the tests of the scripts in examples/default_aligner/."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "examples" / "default_aligner"


@pytest.fixture
def example_script(monkeypatch):
    """Import a script of examples/default_aligner/ by module name (its folder on sys.path for
    the test); forgotten again afterwards."""
    monkeypatch.syspath_prepend(str(SCRIPTS))
    loaded = []

    def load(name: str):
        loaded.append(name)
        return importlib.import_module(name)

    yield load
    for name in loaded:
        sys.modules.pop(name, None)
