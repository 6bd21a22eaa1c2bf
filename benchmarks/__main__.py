"""Run every benchmark in this folder, offline, on the built-in default models: `python -m benchmarks`.

Each `bench_*.py` script writes its own `benchmarks/results/*.json`; `report.py` then lays them
out in `benchmarks/RESULTS.md`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main() -> int:
    failed = []
    for script in sorted(Path(__file__).parent.glob("bench_*.py")):
        print(f"== {script.name}", flush=True)
        if subprocess.run([sys.executable, str(script)], check=False).returncode != 0:
            failed.append(script.name)
    subprocess.run([sys.executable, str(Path(__file__).parent / "report.py")], check=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
