"""Copy-aware speculative greedy decoding for the transformers backend, batched, with prefix reuse.

`decode_greedy(lm, prompts, ...)` returns for each prompt the tokens plain greedy decoding gives:
each step feeds a row's last token plus a draft copied ahead from the response (`CopyDrafter`),
keeps the longest prefix the model agrees with plus its own next token, and masks the rejected
positions out of the `DynamicCache` (they stay in it as holes; positions come from the mask).
Rows accept different counts, so a batch is not cropped; finished rows leave the batch. A lone row
(one prompt, or the last of a batch) is cropped instead: each rejected draft would leave up to
`max_draft` holes, each a KV entry (46 KB for SmolLM2-135M in fp32) that every later step
attends over.

Why a loop of our own rather than transformers' assisted generation: `generate` with
`prompt_lookup_num_tokens` or an assistant runs one sequence at a time and has no public hook for a
custom candidate generator. Measured on a 2-core CPU with the shipped copy-editing aligner
(benchmarks/RESULTS.md): one prompt at a time, drafting beats plain `generate` on a copy-heavy
workload and costs nothing where the aligner keeps 1% of the answer; verifying batches of 8 in this
loop also beats `generate`'s own batching (1.09x copy-heavy, 1.01x low-copy), so greedy batches
draft too unless the backend's `draft_batches` is off.
`PrefixCache` keeps the KV of recent prompts (the instruction + objectives part is shared across
calls) and starts a new prompt from the longest common *token* prefix, so the split is always at a
token boundary of the full prompt's own tokenization.
"""

from __future__ import annotations

import inspect
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from metaaligner_chain.drafting import CopyDrafter, common_prefix

#: `CopyDrafter` draft lengths for transformers. A forward over 32 new tokens costs about 2.4x a
#: one-token step on a 2-core CPU (benchmarks/results/drafting_transformers.json), so drafts start
#: and stay long: on ten copy-heavy benchmark items whole calls took 10.5 s with start/max 64/64,
#: 11.7 s with 32/32 and 13.9 s with CopyDrafter's defaults (8/16), outputs identical.
#: Off the response, drafts are looked up in the prompt and the generation as transformers'
#: `prompt_lookup_num_tokens` does: always its documented 10 tokens, never paused, from the
#: first occurrence. On the base model's low-copy prompts a fixed and an adaptive length both ran
#: at 0.81x the stock lookup with the latest occurrence, 0.96x with the first (one run each).
#: Lookup drafts of 32 instead of 10 (3 December 2026, an AVX2-only 2-core host, one run each,
#: 12 items): low-copy 0.95x -> 1.02x the best stock lookup, but copy-heavy 1.18x -> 1.08x and
#: held-out 1.10x -> 0.94x (a wrong 32-token draft costs more to check), so 10 stays.
#: `min_match` 2: copy from the response only on a match of two tokens or more (a 1-token match
#: on a common word rarely leads to an accepted draft, and a failed copy costs 1.5-2.5 plain steps
#: on CPU); a weaker match drafts what the stock lookup would.
DRAFTER = {"start_draft": 64, "max_draft": 64, "max_lookup": 10, "fixed_lookup": True,
           "earliest": True, "min_match": 2}


class PrefixCache:
    """An LRU of prompt KV states (one row each) to start new prompts from their longest shared prefix."""

    def __init__(self, size: int = 4):
        self.size = size
        self._entries: OrderedDict[tuple[int, ...], list[tuple[Any, Any]]] = OrderedDict()
        self._guard = threading.Lock()  # several workers look up and store at once

    def longest(self, rows: Sequence[Sequence[int]]) -> tuple[int, list[tuple[Any, Any]] | None]:
        """(n, layers): the cached entry sharing the longest token prefix with *every* row (its
        tensors are only read: a cache started from them concatenates new ones)."""
        with self._guard:
            best, best_ids = 0, None
            for ids in self._entries:
                n = min(common_prefix(ids, row) for row in rows)
                if n > best:
                    best, best_ids = n, ids
            if best_ids is None:
                return 0, None
            self._entries.move_to_end(best_ids)
            return best, self._entries[best_ids]

    def store(self, ids: Sequence[int], layers: list[tuple[Any, Any]]) -> None:
        key = tuple(ids)
        with self._guard:
            if self.size <= 0 or any(k[: len(key)] == key for k in self._entries):
                return
            for old in [k for k in self._entries if key[: len(k)] == k]:
                del self._entries[old]  # the new prompt extends it
            self._entries[key] = layers
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)


@dataclass
class _Row:
    prompt: list[int]
    limit: int
    drafter: CopyDrafter | None
    out: list[int] = field(default_factory=list)
    pos: int = 0  # valid tokens in the cache (= position of the next one)
    done: bool = False
    drafted: int = 0
    accepted: int = 0

    def draft(self) -> list[int]:
        room = self.limit - len(self.out) - 1  # the step also yields the model's own next token
        if self.drafter is None or room <= 0:
            return []
        return self.drafter.propose(self.out)[:room]  # it pauses itself after misses

    def verified(self, drafted: int, accepted: int) -> None:
        self.drafter.update(drafted, accepted)
        self.drafted, self.accepted = self.drafted + drafted, self.accepted + accepted

    def take(self, tokens: Sequence[int], eos: set[int]) -> list[int]:
        """Append verified tokens up to EOS or the limit; returns those appended."""
        kept = []
        for t in tokens:
            if self.done:
                break
            kept.append(t)
            self.out.append(t)
            self.done = t in eos or len(self.out) >= self.limit
        return kept


def decode_greedy(
    lm: Any,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: Sequence[int],
    eos_ids: Sequence[int],
    pad_id: int,
    responses: Sequence[Sequence[int] | None] | None = None,
    prefix_cache: PrefixCache | None = None,
    on_tokens: Callable[[int, list[int]], None] | None = None,
) -> list[tuple[list[int], dict[str, int]]]:
    """Greedy new tokens (up to and including EOS) and draft stats for each prompt, in order.

    `responses[i]` (token ids) seeds row i's drafter; None decodes it one token per step.
    `on_tokens(i, new)` is called as tokens of row i are verified (for streaming).
    """
    import torch

    responses = responses or [None] * len(prompts)
    rows = [
        _Row(list(p), int(m), CopyDrafter(r, context=p, **DRAFTER) if r else None)
        for p, m, r in zip(prompts, max_new_tokens, responses)
    ]
    eos = set(eos_ids)
    device = lm.device
    # Prefill: [cached prefix][left padding][rest of prompt]; positions follow the mask.
    batch = len(rows)
    n, cache = start_cache(prefix_cache, [r.prompt for r in rows])
    width = max(len(r.prompt) - n for r in rows)
    ids = torch.full((batch, width), pad_id, dtype=torch.long)
    mask = torch.zeros((batch, n + width), dtype=torch.long)
    mask[:, :n] = 1
    for i, r in enumerate(rows):
        rest = r.prompt[n:]
        ids[i, width - len(rest):] = torch.tensor(rest)
        mask[i, n + width - len(rest):] = 1
        r.pos = len(r.prompt)
    logits = forward(lm, cache, ids.to(device), mask, width, keep=1)
    if prefix_cache is not None:
        prompt_cols = mask[0].nonzero().squeeze(1).to(device)
        prefix_cache.store(rows[0].prompt, [  # (indexing by a tensor copies: nothing shared)
            (layer.keys[:1, :, prompt_cols], layer.values[:1, :, prompt_cols])
            for layer in cache.layers
        ])
    first = logits[:, -1].argmax(-1).tolist()
    for i, r in enumerate(rows):
        _emit(on_tokens, i, r.take([first[i]], eos))
    live = [i for i, r in enumerate(rows) if not r.done]
    if len(live) < batch:
        cache, mask = _select(cache, mask, live, device)
    while live:
        drafts = [rows[i].draft() for i in live]
        width = 1 + max(len(d) for d in drafts)
        ids = torch.full((len(live), width), pad_id, dtype=torch.long)
        new_mask = torch.zeros((len(live), width), dtype=torch.long)
        positions = torch.ones((len(live), width), dtype=torch.long)
        for b, (i, d) in enumerate(zip(live, drafts)):
            feed = [rows[i].out[-1], *d]
            ids[b, : len(feed)] = torch.tensor(feed)
            new_mask[b, : len(feed)] = 1
            positions[b, : len(feed)] = torch.arange(rows[i].pos, rows[i].pos + len(feed))
        mask = torch.cat([mask, new_mask], dim=1)
        predicted = forward(lm, cache, ids.to(device), mask, width, positions).argmax(-1).tolist()
        for b, (i, d) in enumerate(zip(live, drafts)):
            row, guess = rows[i], predicted[b]
            a = 0
            while a < len(d) and d[a] == guess[a]:
                a += 1
            if d:
                row.verified(len(d), a)
            rejected = width - 1 - a
            if len(live) == 1 and rejected:  # the rejected draft positions are dropped
                cache.crop(-rejected)  # (a count to remove: transformers 4 and 5 agree on it)
                mask = mask[:, :-rejected]
            else:  # they become holes
                mask[b, mask.shape[1] - rejected:] = 0
            row.pos += 1 + a
            _emit(on_tokens, i, row.take([*d[:a], guess[a]], eos))
        keep = [b for b, i in enumerate(live) if not rows[i].done]
        if len(keep) < len(live):
            cache, mask = _select(cache, mask, keep, device)
            live = [live[b] for b in keep]
    return [(r.out, {"drafted_tokens": r.drafted, "accepted_tokens": r.accepted}) for r in rows]


def cache_keyword(module: Any) -> str:
    """The KV cache's keyword in `module`'s forward (`past_key_values` before transformers 5
    renamed it `cache`)."""
    return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"


def start_cache(prefix_cache: PrefixCache | None, prompts: Sequence[Sequence[int]]) -> tuple[int, Any]:
    """(n, cache): a `DynamicCache` holding, for each of the prompts, the longest prefix
    `prefix_cache` shares with all of them (never a whole prompt: its last token is evaluated for
    its logits); (0, an empty cache) when none is shared."""
    from transformers import DynamicCache

    n, layers = prefix_cache.longest(prompts) if prefix_cache else (0, None)
    n = min([n] + [len(p) - 1 for p in prompts])
    if n <= 0 or layers is None:
        return 0, DynamicCache()
    rows = len(prompts)
    return n, DynamicCache([(k[:, :, :n].expand(rows, -1, -1, -1), v[:, :, :n].expand(rows, -1, -1, -1))
                            for k, v in layers])


def forward(
    lm: Any, cache: Any, ids: Any, mask: Any, width: int, positions: Any = None, keep: int = 0
) -> Any:
    """Logits for the `width` new columns (`keep`: the last `keep` columns' alone; a prefill needs
    one: a 400-token prompt's logits over a 49k vocabulary are 79 MB a row in fp32); the cache
    grows by `width` (padding columns are masked)."""
    out = lm(**_step_inputs(lm, cache, ids, mask, width, positions),
             **({"logits_to_keep": keep} if keep else {}))
    return out.logits


def hidden_states(lm: Any, cache: Any, ids: Any, mask: Any, width: int) -> Any:
    """The decoder's last hidden states (what the output head reads) for the `width` new columns,
    without the logits; the cache grows as in `forward`."""
    decoder = lm.get_decoder()
    return decoder(**_step_inputs(decoder, cache, ids, mask, width)).last_hidden_state


def _step_inputs(module: Any, cache: Any, ids: Any, mask: Any, width: int, positions: Any = None) -> dict:
    if positions is None:  # prefill: count valid tokens before each column
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -width:]
    return {"input_ids": ids, "attention_mask": mask.to(ids.device),
            "position_ids": positions.to(ids.device), "use_cache": True,
            cache_keyword(module): cache}


def _select(cache: Any, mask: Any, keep: list[int], device: Any) -> tuple[Any, Any]:
    import torch

    index = torch.tensor(keep, dtype=torch.long)
    if keep:
        cache.batch_select_indices(index.to(device))
    return cache, mask[index]


def _emit(callback: Callable[[int, list[int]], None] | None, row: int, tokens: list[int]) -> None:
    if callback is not None and tokens:
        callback(row, tokens)
