"""Cached folders are built once, whole, however many callers ask at the same moment."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from metaaligner_chain.models.cache import cached_dir


def _complete(folder: Path) -> bool:
    return (folder / "model.bin").is_file()


def test_concurrent_first_calls_build_once(tmp_path):
    builds = []
    started = threading.Barrier(12)

    def build(out: Path) -> None:
        builds.append(out)
        time.sleep(0.3)  # long enough for every other caller to arrive while it builds
        (out / "model.bin").write_bytes(b"weights")

    def ask(_):
        started.wait()
        return cached_dir(tmp_path / "model", build, _complete)

    with ThreadPoolExecutor(12) as pool:
        folders = list(pool.map(ask, range(12)))
    assert len(builds) == 1
    assert set(folders) == {tmp_path / "model"} and _complete(tmp_path / "model")


def test_processes_wait_for_the_first_build(tmp_path):
    script = (
        "import sys, time; from pathlib import Path\n"
        "from metaaligner_chain.models.cache import cached_dir\n"
        "def build(out):\n"
        "    time.sleep(0.5); (out / 'model.bin').write_bytes(b'w')\n"
        "    (Path(sys.argv[1]) / 'builds').open('a').write('x')\n"
        "cached_dir(Path(sys.argv[1]) / 'model', build, lambda f: (f / 'model.bin').is_file())\n"
    )
    children = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path)]) for _ in range(3)]
    assert [child.wait(timeout=120) for child in children] == [0, 0, 0]
    assert (tmp_path / "builds").read_text() == "x"


def test_a_failed_build_leaves_nothing_and_the_next_caller_builds(tmp_path):
    def broken(out: Path) -> None:
        (out / "half").write_bytes(b"")
        raise RuntimeError("disk full")

    try:
        cached_dir(tmp_path / "model", broken, _complete)
    except RuntimeError:
        pass
    assert not (tmp_path / "model").exists()
    assert list(tmp_path.iterdir()) == []  # no staging folder, no lock file
    folder = cached_dir(tmp_path / "model", lambda out: (out / "model.bin").write_bytes(b"w"), _complete)
    assert _complete(folder)
