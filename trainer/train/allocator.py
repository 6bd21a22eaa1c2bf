"""Train on CPU with tcmalloc (or jemalloc) instead of glibc's malloc when one is installed.

Each training step allocates and frees tensors of hundreds of megabytes (the logits of a batch
over the whole vocabulary). glibc hands blocks that large back to the kernel at once, so every
step pays for page faults on fresh memory; measured here, a CPU LoRA step spent as long in the
kernel as in the model. tcmalloc keeps the freed pages, and the same steps run about twice as
fast (`benchmarks/train_allocator.py` measures it). This is what PyTorch's own CPU launcher
(`python -m torch.backends.xeon.run_cpu`) does by preloading the library; that launcher looks
for it only outside the multiarch folders Debian and Ubuntu install it in, so `ma-train` finds
it with `ctypes.util.find_library` and re-executes itself with ``LD_PRELOAD`` set.

Opt out with ``MA_TRAIN_ALLOCATOR=system``; choose one with ``MA_TRAIN_ALLOCATOR=jemalloc``.
Install on Debian/Ubuntu: ``apt install libtcmalloc-minimal4`` (or ``libjemalloc2``).
"""

from __future__ import annotations

import ctypes.util
import os
import sys

ENV = "MA_TRAIN_ALLOCATOR"
#: Library names in order of preference (tcmalloc measured fastest, see the module docstring).
LIBRARIES = {"tcmalloc": ("tcmalloc_minimal", "tcmalloc"), "jemalloc": ("jemalloc",)}


def find_allocator(choice: str = "auto") -> str | None:
    """The file name of the allocator library to preload, or None (none installed / opted out)."""
    if choice == "system":
        return None
    if choice not in ("auto", *LIBRARIES):
        raise ValueError(
            f"{ENV}={choice!r} is not an allocator; use one of auto, system, {', '.join(LIBRARIES)}."
        )
    kinds = LIBRARIES if choice == "auto" else {choice: LIBRARIES[choice]}
    for names in kinds.values():
        for name in names:
            found = ctypes.util.find_library(name)
            if found:
                return found
    return None


def preloaded() -> bool:
    """True when a fast allocator is already in LD_PRELOAD (by us or by the user)."""
    preload = os.environ.get("LD_PRELOAD", "")
    return any(name in preload for names in LIBRARIES.values() for name in names)


def reexec_with_fast_allocator() -> None:
    """Replace this process by the same command with the allocator preloaded (Linux, CPU only).

    Does nothing on other systems, when a GPU does the work (its memory has its own allocator),
    when the library is missing or already loaded, or when ``MA_TRAIN_ALLOCATOR=system``.
    """
    if not sys.platform.startswith("linux") or preloaded() or _cuda_visible():
        return
    library = find_allocator(os.environ.get(ENV, "auto"))
    if library is None:
        return
    env = dict(os.environ)
    env["LD_PRELOAD"] = ":".join(p for p in (library, env.get("LD_PRELOAD", "")) if p)
    os.execve(sys.executable, list(sys.orig_argv), env)


def _cuda_visible() -> bool:
    """Whether an NVIDIA GPU is present, without importing torch (that would slow --help)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return os.path.exists("/dev/nvidiactl")
