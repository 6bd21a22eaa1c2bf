"""Release the calling thread's idle OpenMP thread pool before decoding moves to another thread.

llama.cpp's CPU build and torch's CPU wheels run their parallel work on libgomp, GCC's OpenMP
runtime. libgomp keeps a pool of worker threads for every thread that ever ran a parallel region,
and once the pools of a process hold more threads than there are cores, it stops spinning at its
barriers and puts waiting threads to sleep: each of the hundreds of barriers in a forward pass then
costs a wake-up. So a stream decoding in its worker thread, while the caller's thread keeps an idle
pool (a policy model run there, or a `score` or `generate` call), ran at half the speed of the same
decoding in the caller's own thread on two cores; freeing the caller's pool first restores it
(`benchmarks/bench_stream_threads.py`). `release_idle_pool` does that with
`omp_pause_resource_all` (OpenMP 5.0), which libgomp implements by freeing the calling thread's
pool; the next parallel region run in that thread builds a new one (one thread start).

It finds the runtimes the process has loaded in /proc/self/maps, so it acts on Linux and does
nothing elsewhere or when no libgomp is loaded.
"""

from __future__ import annotations

import ctypes
import re
from pathlib import Path

#: `omp_pause_soft`: free the pool's threads, keep what the runtime needs to start them again.
PAUSE_SOFT = 1
_LIBGOMP = re.compile(r"/libgomp[^/]*\.so[^/]*$")
_RUNTIMES: dict[str, ctypes.CDLL | None] = {}


def release_idle_pool() -> int:
    """Free the calling thread's OpenMP worker threads in every libgomp the process has loaded
    (they must be idle: call it outside any parallel work of this thread). Returns how many
    runtimes did."""
    released = 0
    for path in loaded_runtimes():
        runtime = _runtime(path)
        if runtime is not None and runtime.omp_pause_resource_all(PAUSE_SOFT) == 0:
            released += 1
    return released


def loaded_runtimes() -> list[str]:
    """Paths of the libgomp copies mapped into this process (torch ships its own beside the
    system's); empty where /proc/self/maps cannot be read."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    return sorted({line.split()[-1] for line in maps.splitlines() if _LIBGOMP.search(line)})


def _runtime(path: str) -> ctypes.CDLL | None:
    """The already loaded library at `path` (dlopen hands back the same copy), if it is GNU
    libgomp with the OpenMP 5.0 pause call. LLVM's libomp, which some systems install under
    libgomp's name, is left alone: its pause acts on the whole process, not the calling thread."""
    if path not in _RUNTIMES:
        try:
            library = ctypes.CDLL(path)
            library.omp_pause_resource_all.argtypes = [ctypes.c_int]
            library.omp_pause_resource_all.restype = ctypes.c_int
        except (OSError, AttributeError):
            library = None
        if library is not None and hasattr(library, "__kmpc_fork_call"):  # LLVM's entry point
            library = None
        _RUNTIMES[path] = library
    return _RUNTIMES[path]
