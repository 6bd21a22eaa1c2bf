"""Test helper: how many tokens llama.cpp evaluates during a call (its own performance counters)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def evaluated_tokens(backend: Any, call: Callable[[], Any]) -> int:
    """Tokens `backend`'s llama.cpp context evaluates (prompt and decode) while `call` runs."""
    import llama_cpp

    def count() -> int:
        with backend.locked_llama() as llama:
            data = llama_cpp.llama_perf_context(llama._ctx.ctx)
            return data.n_p_eval + data.n_eval

    start = count()
    call()
    return count() - start
