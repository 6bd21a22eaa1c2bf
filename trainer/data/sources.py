"""Where preference rows come from: a JSONL/JSON/CSV/Parquet file, a folder of JSONL files, or a
dataset id loaded with `datasets`; each row with its place (`FILE:LINE` for JSONL, `row N of
SOURCE` otherwise), so an error can name it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainer.jsonl import numbered

_FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


def read_records(source: str, split: str = "train") -> list[dict[str, Any]]:
    """Rows of a local JSONL/JSON/CSV/Parquet file, of every `*.jsonl` in a folder (in name
    order), or of a dataset id loaded with `datasets`."""
    return [row for _, row in read_located(source, split)]


def read_located(
    source: str, split: str = "train", bad: list[tuple[str, str]] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """`(where, row)` for every row of `source` (see `read_records`): `FILE:LINE` for JSONL,
    `row N of SOURCE` otherwise. Unreadable JSONL lines go to `bad` when it is given."""
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
        if not files:
            raise ValueError(f"`input` {source!r} is a folder without .jsonl files.")
        return [located for file in files for located in numbered(file, bad=bad)]
    if path.is_file() and path.suffix.lower() == ".jsonl":
        return numbered(path, bad=bad)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".json":
            content = json.loads(path.read_text())
            rows = content if isinstance(content, list) else content.get("data", [content])
        elif suffix in (".csv", ".parquet"):
            import pandas as pd

            frame = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
            rows = frame.to_dict(orient="records")
        else:
            raise ValueError(
                f"`input` {source!r} has suffix {suffix!r}; give a .jsonl, .json, .csv or .parquet file."
            )
    elif path.exists() or source.startswith((".", "/", "~")) or path.suffix.lower() in _FILE_SUFFIXES:
        raise ValueError(f"`input` {source!r} is not a readable file.")
    else:
        try:
            import datasets
        except ImportError as err:
            raise ImportError('Loading a dataset id needs `pip install "metaaligner-chain[train]"`.') from err
        rows = list(datasets.load_dataset(source, split=split))
    return [(f"row {n} of {source}", row) for n, row in enumerate(rows, 1)]


def position(where: str) -> tuple[str, int]:
    """Sort key of a row's place: `FILE:LINE` or `row N of SOURCE`."""
    if where.startswith("row "):
        number_, _, source = where[4:].partition(" of ")
        return source, int(number_)
    file, _, line = where.rpartition(":")
    return file, int(line)
