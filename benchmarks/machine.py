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


#: The vector extensions that decide CPU decoding speed (hosts differ: one run here had
#: AVX512-BF16, a later one AVX2 only, at about half the speed).
SIMD_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16")


def _cpu_field(name: str) -> str | None:
    """A field of /proc/cpuinfo's first processor (None off Linux)."""
    try:
        with open("/proc/cpuinfo") as info:
            return next((line.split(":", 1)[1].strip() for line in info
                         if line.split(":", 1)[0].strip() == name), None)
    except OSError:
        return None


def _cpu_simd() -> list[str] | None:
    flags = _cpu_field("flags")
    return None if flags is None else [f for f in SIMD_FLAGS if f in flags.split()]


def run_header(benchmark: str, load_at_start: tuple[float, ...], **machine: Any) -> dict[str, Any]:
    """The header of a results file; `machine` adds engine facts (versions, threads)."""
    return {
        "benchmark": benchmark,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": _command(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_model": _cpu_field("model name"),
            "cpu_simd": _cpu_simd(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            **machine,
            # the machine is shared: the load tells how far to trust absolute figures
            "load_average_at_start": [round(x, 2) for x in load_at_start],
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
    }
