"""ARCHITECTURE.md stays the map of the tree: every module is named in it."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_module_is_named_in_architecture_md():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    modules = [p for package in ("metaaligner_chain", "trainer") for p in (ROOT / package).rglob("*.py")
               if p.name != "__init__.py"]
    assert modules
    unnamed = [str(p.relative_to(ROOT)) for p in modules if f"`{p.name}`" not in text]
    assert not unnamed, f"name these in ARCHITECTURE.md, in the room of the step they belong to: {unnamed}"
