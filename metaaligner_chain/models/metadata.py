"""What a model says about itself: the prompt format it was trained with, its objectives, its base.

Written by `ma-train` next to a trained model (`metaaligner.json`) and into exported GGUF files
(`metaaligner.*` keys); read here to pick the prompt format, falling back to the released
checkpoints' naming convention (`HH-RLHF` / `UltraFeedback` / `IMHI` in the model name).
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

from metaaligner_chain.models.gguf_header import GGUF_PREFIX, read_gguf_header

METADATA_FILE = "metaaligner.json"
#: GGUF key/values our exporter writes; lists are stored comma-joined.
GGUF_KEYS = ("prompt_format", "objectives", "base_model")

_NAME_MARKERS = (("hh-rlhf", "hh-rlhf"), ("hh_rlhf", "hh-rlhf"), ("ultrafeedback", "ultrafeedback"), ("imhi", "imhi"))


def write_metadata(model_dir: str | Path, **fields: Any) -> Path:
    """Merge `fields` into `model_dir/metaaligner.json` (created if missing); return its path."""
    path = Path(model_dir) / METADATA_FILE
    current = json.loads(path.read_text()) if path.exists() else {}
    current.update({k: v for k, v in fields.items() if v is not None})
    path.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    return path


def read_metadata(model: str | Path) -> dict[str, Any]:
    """Metadata saved with a local model directory or GGUF file; `{}` when there is none.

    Every aligned call asks for it (the recorded `keep_margin` and `candidates`), and a GGUF's
    header takes tens of milliseconds to read: a file is parsed once per version (its
    modification time and size), and each caller gets its own copy."""
    path = Path(model).expanduser()
    source = path / METADATA_FILE if path.is_dir() else path
    if not source.is_file() or (source is path and path.suffix != ".gguf"):
        return {}
    stat = source.stat()
    return copy.deepcopy(_parsed_metadata(source, stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=32)
def _parsed_metadata(source: Path, mtime_ns: int, size: int) -> dict[str, Any]:
    if source.suffix == ".gguf":
        return read_gguf_metadata(source)
    return json.loads(source.read_text())


def read_gguf_metadata(path: str | Path) -> dict[str, Any]:
    """The `metaaligner.*` key/values of a GGUF file; `{}` when it is not a readable GGUF."""
    try:
        return metaaligner_keys(read_gguf_header(path))
    except (OSError, ValueError):  # not a GGUF file: the backend reports that with a clear error
        return {}


def metaaligner_keys(header: dict[str, Any]) -> dict[str, Any]:
    """Our keys from GGUF key/values, prefix dropped; `objectives` split back into a list."""
    found = {}
    for name, value in header.items():
        if name.startswith(GGUF_PREFIX):
            key = name[len(GGUF_PREFIX):]
            found[key] = value.split(",") if key == "objectives" and isinstance(value, str) else value
    return found


def prompt_format_from_name(model: str) -> str | None:
    """The released code's rule: the prompt format is named by a substring of the model path."""
    lowered = Path(str(model)).name.lower() or str(model).lower()
    for marker, prompt_format in _NAME_MARKERS:
        if marker in lowered:
            return prompt_format
    return None
