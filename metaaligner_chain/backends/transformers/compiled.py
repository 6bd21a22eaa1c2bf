"""`compile=True`: transformers' `generate` runs a `torch.compile`d decoder; nothing else does.

Beyond reading the weights, an eager decoding step here launches a few thousand small operations
(norms, rotary embeddings, the cache's concatenations); inductor fuses them. On the default aligner
(fp32, 2 CPU cores) plain greedy decoding ran about 1.2x faster compiled, with the same tokens
(`benchmarks/bench_transformers_dtype.py`). Only `generate`'s paths use the compiled decoder:
sampling, `drafting=False`, the repeat-guard retry and batches sent to `generate`. The drafted greedy
loop and `score` keep the eager one: their caches come in many layouts (a reused prefix's slices,
drafts cropped back, widths of one and of a draft), which compiled eight graphs at about 45 s each on
2 cores before torch gave up and ran them eagerly anyway.

Compilation is lazy and dynamic in the lengths: the first `generate` compiles the prompt's graph and
the one-token step's (one to two minutes on 2 CPU cores); later prompts and cache lengths reuse them.
"""

from __future__ import annotations

import copy
import shutil
from typing import Any

#: Compilers inductor can build its CPU kernels with.
CXX = ("g++", "c++", "clang++")


def compiled_view(lm: Any) -> Any:
    """A shallow copy of `lm` whose decoder runs compiled. Parameters, buffers and configuration
    are `lm`'s own (nothing is copied); `lm` itself stays eager."""
    decoder = lm.get_decoder()
    name = next((key for key, module in lm.named_children() if module is decoder), None)
    if name is None:
        raise ValueError(
            f"`compile=True` found no decoder among {type(lm).__name__}'s children; pass "
            "compile=False for this model."
        )
    view = copy.copy(lm)
    view._modules = dict(lm._modules)  # its own table, so the swap below leaves `lm` alone
    view._modules[name] = copy.copy(decoder)  # layers shared, `__call__` compiled on this copy only
    view._modules[name].compile(dynamic=True)
    return view


def check_compiler(device: str) -> None:
    """Inductor builds C++ kernels on the CPU and Triton kernels on CUDA: a missing toolchain is
    said at load rather than on the first call."""
    if device == "cpu" and not any(shutil.which(cxx) for cxx in CXX):
        raise RuntimeError(
            "`compile=True` on the CPU needs a C++ compiler (torch's inductor builds its kernels "
            f"with one; none of {', '.join(CXX)} is on PATH): install one (e.g. `apt install g++`) "
            "or pass compile=False."
        )
    if device.startswith("cuda"):
        from torch.utils._triton import has_triton

        if not has_triton():
            raise RuntimeError(
                "`compile=True` on CUDA needs Triton (torch's inductor builds its GPU kernels with "
                "it): `pip install triton`, or pass compile=False."
            )
