"""Run every benchmark in this folder, offline, on the built-in default models: `python -m benchmarks`.

Each `bench_*.py` module writes its own `benchmarks/results/*.json`; `report.py` then lays them
out in `benchmarks/RESULTS.md`. One runs alone as `python -m benchmarks.bench_<name>` from the
repository root, where `benchmarks` and the installed package both import.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main() -> int:
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"== {script.name}", flush=True)
        if _run_module(script.stem).returncode != 0:
            failed.append(script.name)
    _run_module("report").check_returncode()
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _run_module(name: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"benchmarks.{name}"], cwd=HERE.parent, check=False)


if __name__ == "__main__":
    sys.exit(main())
