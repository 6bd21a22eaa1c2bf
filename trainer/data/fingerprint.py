"""What a data build is made from, hashed: the input files' bytes (and the `paraphrases` file's),
the `DataConfig` settings and the code that writes rows. `ma-train run` reuses a build whose summary.json records the same
fingerprint (`trainer.data.cli.build_or_reuse`); any changed part rebuilds.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

from trainer.config import DataConfig

#: The modules whose code decides the rows: editing one makes every earlier build stale.
ROW_WRITERS = ("trainer.data.formats", "trainer.data.reformulate", "metaaligner_chain.prompt",
               "metaaligner_chain.objectives", "metaaligner_chain.coerce")


def fingerprint(config: DataConfig) -> dict[str, Any] | None:
    """`{"files": {name: sha256}, "settings": sha256, "code": sha256, "sha256": of them all}`, or
    None when `input` is a dataset id (its content is not read here, so it is rebuilt each time).

    Settings are every field but `out` (where the build goes) and `input` (the files' bytes stand
    for it, so a moved copy of the same data is still the same build).
    """
    files = input_files(config.input)
    if files is None:
        return None
    settings = config.model_dump(mode="json", exclude={"out", "input"})
    wordings = Path(config.paraphrases).expanduser() if config.paraphrases else None
    if wordings is not None and wordings.is_file():  # they write the rows as much as the data does
        files = {**files, f"paraphrases:{wordings.name}": wordings}
    parts = {
        "files": {name: _sha256(path.read_bytes()) for name, path in files.items()},
        "settings": _sha256(json.dumps(settings, sort_keys=True).encode()),
        "code": _sha256(b"".join(Path(importlib.util.find_spec(m).origin).read_bytes() for m in ROW_WRITERS)),
    }
    return {**parts, "sha256": _sha256(json.dumps(parts, sort_keys=True).encode())}


def input_files(source: str) -> dict[str, Path] | None:
    """The local files a build reads, by name (a folder: its *.jsonl, as `read_located` reads
    them); None for a dataset id."""
    path = Path(source).expanduser()
    if path.is_dir():
        return {file.name: file for file in sorted(path.glob("*.jsonl"))}
    if path.is_file():
        return {path.name: path}
    return None


def changes(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """What differs between a recorded fingerprint and a new one, in words (empty: the same)."""
    if not old or "sha256" not in old:
        return ["no fingerprint recorded"]
    if old["sha256"] == new["sha256"]:
        return []
    before = old.get("files", {})
    found = [f"{name} {'changed' if name in before else 'added'}"
             for name, digest in new["files"].items() if before.get(name) != digest]
    found += [f"{name} removed" for name in before if name not in new["files"]]
    found += [f"{part} changed" for part in ("settings", "code") if old.get(part) != new[part]]
    return found or ["fingerprint changed"]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
