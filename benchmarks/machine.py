"""What every results file records about its run: benchmark, date, command and machine."""

from __future__ import annotations

import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _command() -> str:
    """The command as typed from the repository root: ``python -m benchmarks.<script> ...``."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    script = ["-m", spec.name] if spec else [sys.argv[0]]
    return " ".join([Path(sys.executable).name, *script, *sys.argv[1:]])


def llama_cpp_version() -> str:
    """The installed llama-cpp-python, as results files name it."""
    import llama_cpp

    return f"llama-cpp-python {llama_cpp.__version__}"


def run_header(benchmark: str, load_at_start: tuple[float, ...], **machine: Any) -> dict[str, Any]:
    """The header of a results file; `machine` adds engine facts (versions, threads)."""
    return {
        "benchmark": benchmark,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": _command(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            **machine,
            # the machine is shared: the load tells how far to trust absolute figures
            "load_average_at_start": [round(x, 2) for x in load_at_start],
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
    }
