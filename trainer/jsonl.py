"""The one JSONL reader of the trainer: every error names the file and the line, and the fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def numbered(
    path: str | Path, *, torn_tail_ok: bool = False, bad: list[tuple[str, str]] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """`("FILE:LINE", object)` for every non-blank line of a JSONL file.

    Raises ValueError naming the file and line for bytes that are not UTF-8, a line that is not
    JSON, or one that is not a JSON object; with a `bad` list such lines are recorded there as
    `(FILE:LINE, problem)` and skipped instead. `torn_tail_ok` drops an unparsable *last* line (an
    append cut short by a killed process), for files written as resumable logs.
    """
    path = Path(path)
    lines = path.read_bytes().split(b"\n")
    last = max((n for n, line in enumerate(lines, 1) if line.strip()), default=0)
    rows = []
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            problem = f"not UTF-8 ({exc.reason} at byte {exc.start + 1} of the line); save the file as UTF-8"
        except json.JSONDecodeError as exc:
            if torn_tail_ok and number == last:
                break
            problem = f"not JSON ({exc.msg} at column {exc.colno}); write one JSON object per line"
        else:
            if isinstance(row, dict):
                rows.append((where, row))
                continue
            problem = f"a line must be a JSON object ({{...}}), got {type(row).__name__}"
        if bad is None:
            raise ValueError(f"{where}: {problem}.")
        bad.append((where, problem))
    return rows


def read_jsonl(path: str | Path, *, torn_tail_ok: bool = False) -> list[dict[str, Any]]:
    """The objects of a JSONL file (see `numbered` for the errors)."""
    return [row for _, row in numbered(path, torn_tail_ok=torn_tail_ok)]
