"""The one JSONL reader of the trainer: every error names the file and the line, and the fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def numbered(path: str | Path, *, torn_tail_ok: bool = False) -> list[tuple[str, dict[str, Any]]]:
    """`("FILE:LINE", object)` for every non-blank line of a JSONL file.

    Raises ValueError naming the file and line for bytes that are not UTF-8, a line that is not
    JSON, or one that is not a JSON object. `torn_tail_ok` drops an unparsable *last* line (an
    append cut short by a killed process) instead, for files written as resumable logs.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line}: not UTF-8 ({exc.reason}); save the file as UTF-8.") from exc
    rows = []
    last = max((n for n, line in enumerate(lines, 1) if line.strip()), default=0)
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            if torn_tail_ok and number == last:
                break
            raise ValueError(
                f"{path}:{number}: not JSON ({exc.msg} at column {exc.colno}); write one JSON "
                "object per line."
            ) from exc
        if not isinstance(row, dict):
            raise ValueError(
                f"{path}:{number}: a line must be a JSON object ({{...}}), got {type(row).__name__}."
            )
        rows.append((f"{path}:{number}", row))
    return rows


def read_jsonl(path: str | Path, *, torn_tail_ok: bool = False) -> list[dict[str, Any]]:
    """The objects of a JSONL file (see `numbered` for the errors)."""
    return [row for _, row in numbered(path, torn_tail_ok=torn_tail_ok)]
