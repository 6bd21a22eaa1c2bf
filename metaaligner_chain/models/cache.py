"""Cached folders (derived model copies, llama.cpp's converter) built once and renamed into place.

The cache root is `$METAALIGNER_CACHE` or `~/.cache/metaaligner-chain`. A folder is built in a
temporary sibling and renamed, so an interrupted build never leaves a half-filled cache, and two
processes building at once both end with the complete copy.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

#: Environment variable naming the cache root (default `~/.cache/metaaligner-chain`).
CACHE_ENV = "METAALIGNER_CACHE"


def default_cache_root() -> Path:
    """Where derived files live: `$METAALIGNER_CACHE` or the user cache."""
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "metaaligner-chain"


def cached_dir(target: Path, build: Callable[[Path], None], complete: Callable[[Path], bool]) -> Path:
    """`target` when `complete(target)`; else `build(staging)` beside it and rename it into place."""
    if complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(staging)
        if not complete(target):
            shutil.rmtree(target, ignore_errors=True)  # an incomplete copy left by hand
            try:
                staging.rename(target)
            except OSError:  # another process renamed its complete copy in between
                if not complete(target):
                    raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
