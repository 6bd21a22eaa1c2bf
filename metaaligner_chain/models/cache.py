"""Cached folders (derived model copies, llama.cpp's converter) built once and renamed into place.

The cache root is `$METAALIGNER_CACHE` or `~/.cache/metaaligner-chain`. A folder is built in a
temporary sibling and renamed, so an interrupted build never leaves a half-filled cache. Builds
are single-flight: callers asking for the same folder at once (threads, or processes through a
lock file beside it) wait for the first one's build instead of each building their own (twelve
concurrent first calls used to merge the 271 MB default GGUF six times over, 3.2 GB at peak).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
    with _single_flight(target):
        if complete(target):  # built by the caller we waited for
            return target
        return _build(target, build, complete)


def _build(target: Path, build: Callable[[Path], None], complete: Callable[[Path], bool]) -> Path:
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


_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


@contextmanager
def _single_flight(target: Path) -> Iterator[None]:
    """One builder of `target` at a time: a lock per folder in this process, and an exclusive
    `flock` on `.<name>.lock` beside it across processes (where the OS has one)."""
    with _locks_guard:
        lock = _locks.setdefault(target.resolve(), threading.Lock())
    path = target.parent / f".{target.name}.lock"
    with lock, open(path, "a") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: the rename in `_build` still keeps the folder whole
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            # Leave no file behind. A process already waiting on this one then builds only if
            # the build failed (it re-checks first), and the rename keeps that safe too.
            path.unlink(missing_ok=True)
            fcntl.flock(handle, fcntl.LOCK_UN)
