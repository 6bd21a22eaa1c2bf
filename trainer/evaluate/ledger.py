"""Append-only JSONL records keyed by a stable hash: what makes an evaluation resumable.

A record is written as soon as it exists, so an interrupted run loses at most the item in flight.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from trainer.jsonl import read_jsonl


def stable_hash(*parts: Any) -> str:
    """20 hex digits of SHA-256 over the JSON of `parts`: same parts, same key, any machine."""
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()[:20]


def read(path: Path) -> dict[str, dict]:
    """All records of `path` by their "key" (later lines win); `{}` when the file is missing."""
    if not path.exists():
        return {}
    return {r["key"]: r for r in read_jsonl(path, torn_tail_ok=True)}  # a killed run may cut the last line


def append(path: Path, record: dict) -> None:
    """Add one record (values JSON cannot hold are written as strings)."""
    with path.open("a") as f:
        f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
