"""KV snapshots of earlier prompts for the llama.cpp backend, one per objective preamble.

llama-cpp-python keeps only the previous call's KV cache; these snapshots let calls that alternate
between objective sets still skip their preamble. Restoring one never changes an output token.

Not its `LlamaRAMCache`: `Llama.set_cache` acts in `create_completion` only, not in the `generate`
loop the backend decodes with, and driven by hand it copies a whole state after every call. Calls
alternating two ~280-token preambles on the default aligner: 547 ms to the first token with these
snapshots, 650 ms with LlamaRAMCache, 2353 ms with neither (benchmarks/RESULTS.md, 1 thread).
"""

from __future__ import annotations

import ctypes
from collections import OrderedDict
from collections.abc import Sequence

from metaaligner_chain.drafting import common_prefix

#: Shortest prompt prefix worth a KV snapshot (the bare instruction, ~35 tokens, is not).
MIN_PREFIX = 64


class PrefixCache:
    """KV snapshots of earlier prompts, so a prompt prefix survives calls that do not share it.

    llama-cpp-python keeps only the previous call's KV cache, so calls alternating between two
    objective sets would re-read both preambles every time. Before a call discards the live cache
    beyond the prefix it shares with the new prompt, the live cache is snapshotted unless a
    snapshot already shares `MIN_PREFIX` tokens with it (one snapshot per preamble); a prompt that
    starts with more of a snapshot than of the live cache loads it. Least recently used goes first.
    """

    def __init__(self, size: int):
        self.size = size
        self.restored = 0  # calls that started from a snapshot rather than the live cache
        self._entries: OrderedDict[tuple[int, ...], ctypes.Array] = OrderedDict()

    def restore(self, llama, tokens: Sequence[int]) -> None:
        """Leave in `llama`'s KV cache the longest known prefix of `tokens`."""
        if not self.size:
            return
        cached = llama._input_ids.tolist()
        live = common_prefix(cached, tokens)
        best, key = max(((common_prefix(k, tokens), k) for k in self._entries), default=(0, ()))
        use = best > live and best >= MIN_PREFIX
        if use:
            self._entries.move_to_end(key)
        if len(cached) - live >= MIN_PREFIX and not any(
            common_prefix(k, cached) >= max(live, MIN_PREFIX) for k in self._entries
        ):
            self._save(llama, tuple(cached), spare=key if use else None)
        if use:
            self._load(llama, key, best)
            self.restored += 1

    def _save(self, llama, key: tuple[int, ...], spare: tuple[int, ...] | None = None) -> None:
        """Snapshot the live cache under `key`; evict the least recently used beyond `size`,
        never `spare` (the snapshot about to be loaded: with one slot, the new one goes again)."""
        import llama_cpp

        llama._ctx.kv_cache_seq_rm(0, len(key), -1)
        size = llama_cpp.llama_state_seq_get_size(llama._ctx.ctx, 0)
        data = (ctypes.c_uint8 * size)()
        llama_cpp.llama_state_seq_get_data(llama._ctx.ctx, data, size, 0)
        self._entries[key] = data
        while len(self._entries) > self.size:
            del self._entries[next(k for k in self._entries if k != spare)]

    def _load(self, llama, key: tuple[int, ...], keep: int) -> None:
        import llama_cpp

        llama._ctx.kv_cache_seq_rm(0, 0, -1)
        data = self._entries[key]
        if not llama_cpp.llama_state_seq_set_data(llama._ctx.ctx, data, len(data), 0):
            llama.reset()  # a snapshot from an incompatible context: evaluate from scratch
            del self._entries[key]
            return
        llama._ctx.kv_cache_seq_rm(0, keep, -1)
        llama.input_ids[:keep] = key[:keep]
        llama.n_tokens = keep
        llama._requires_eval = True
