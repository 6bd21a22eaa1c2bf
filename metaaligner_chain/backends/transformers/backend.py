"""Transformers engine: hub id or local directory (or a GGUF file, dequantised), batched greedy generation.

One model per (path, dtype, device) per process (loaded by `loading`), shared through `get_backend`.
Calls are served `workers` at a time (default one): on a CPU whose decoding steps are bound by
per-operation latency, two workers at one intra-op thread each decoded 1.7x the tokens per second
of one at two threads (`benchmarks/bench_transformers_profile.py`), and served eight concurrent
callers of the runnable 1.37x faster, a lone caller 0.85x (`bench_concurrency.py`). A greedy
batch (`batch()`) is split among the workers, each decoding its share as one batch.
Prompts are raw strings tokenized with the tokenizer's special tokens (BOS), as in the released
inference; batches are length-bucketed and left-padded; only new tokens are decoded, up to the
first EOS. Greedy calls with `settings.drafting` (the default) on one prompt (and `stream`) go
through `drafting.decode_greedy`: drafts copied from the response, prompt prefixes reused; same
tokens as `generate`. Greedy batches are verified in the same drafted loop (`draft_batches=False`
sends them to `generate`); sampling, `drafting=False` and `repeat_guard` (transformers'
no-repeat n-gram rule applied to the new tokens only) use transformers' `generate`, through a
compiled decoder with `compile=True` (`compiled`).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import metaaligner_chain.backends.openmp as openmp
from metaaligner_chain.backends.base import (
    Capabilities,
    Generation,
    GenerationSettings,
    PromptTooLongError,
)
from metaaligner_chain.backends.transformers.drafting import (
    PrefixCache,
    decode_greedy,
    forward,
    hidden_states,
    start_cache,
)
from metaaligner_chain.backends.transformers.loading import (
    import_torch_transformers,
    load_model,
    pick_device,
    pick_dtype,
)
from metaaligner_chain.models.metadata import read_metadata


class TransformersBackend:
    """A causal LM through Hugging Face transformers. Thread-safe: at most `workers` calls run at
    once, sharing the model (the rest wait)."""

    name = "transformers"
    #: Batches prompts in one `generate`, drafts and reuses prefixes in its own loop (`drafting`).
    capabilities = Capabilities(drafting=True, prefix_reuse=True, repeat_guard=True, scoring=True)

    def __init__(
        self,
        model: str,
        *,
        dtype: str | None = None,
        device: str | None = None,
        trust_remote_code: bool = False,
        batch_size: int = 8,
        prefix_cache_size: int = 2,
        draft_batches: bool = True,
        adapter: str | os.PathLike[str] | None = None,
        transposed_head: bool = True,
        workers: int = 1,
        compile: bool = False,
    ):
        torch, _ = import_torch_transformers()
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ValueError(
                f"`workers` is {workers!r}; pass a whole number >= 1 (the calls served at once; "
                "2 on a 2-core CPU served eight concurrent callers 1.37x faster than 1)."
            )
        self._torch = torch
        self.model = str(model)
        self.device = pick_device(torch, device)
        self.dtype = pick_dtype(torch, dtype, self.device)
        self.batch_size = batch_size
        #: KV states of recent prompts; a new prompt starts from its longest shared token prefix
        #: (the instruction + objectives). 0 turns prefix reuse off. Each entry holds a whole
        #: prompt's KV (about 8 MB for the default aligner in fp32); two serve a call (the keep
        #: test and a retry start from its own prompt) and the one before it. Against four they
        #: took the same time, even with objectives cycling through four sets (1.00x,
        #: benchmarks/bench_prefix_cache_size.py), and lowered the peak by about 20 MB
        #: (bench_memory.py).
        self.prefixes = PrefixCache(prefix_cache_size)
        #: Verify drafts for a batch of several prompts in one loop (greedy, `drafting` on). With
        #: the shipped copy-editing aligner it measured 1.09x `generate`'s own batching on the
        #: copy-heavy workload and 1.01x on the low-copy one (benchmarks/results/
        #: drafting_transformers.json); False sends greedy batches to `generate`.
        self.draft_batches = draft_batches
        self.adapter = None if adapter is None else Path(adapter).expanduser()
        self.tokenizer, self.lm = load_model(self.model, self.dtype, self.device, self.adapter,
                                             trust_remote_code=trust_remote_code)
        self.lm.eval()
        #: The logits' product as (W @ h.T).T on the CPU in fp32 (`head`: up to ~3x faster at the
        #: rows drafting verifies); False keeps transformers' own `Linear`.
        from metaaligner_chain.backends.transformers.head import transpose_head  # needs torch

        self.transposed_head = transposed_head and transpose_head(self.lm)
        #: What `generate`'s paths call (sampling, `drafting=False`, the repeat guard): with
        #: `compile`, a view of `lm` whose decoder is compiled (`compiled`); else `lm`.
        self.compiled = bool(compile)
        self._generator = self.lm
        if self.compiled:
            from metaaligner_chain.backends.transformers.compiled import check_compiler, compiled_view

            check_compiler(self.device)
            self._generator = compiled_view(self.lm)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.unk_token or self.tokenizer.eos_token
        self.eos_ids = self._eos_ids()
        self.context_length = int(
            getattr(self.lm.config, "max_position_embeddings", None)
            or self.tokenizer.model_max_length
        )
        # an adapter's own metadata (prompt format, objectives) wins over the base model's
        self.metadata = (self.adapter and read_metadata(self.adapter)) or read_metadata(self.model)
        #: Calls served at once. With more than one, torch's intra-op threads are divided among
        #: them (a process-wide setting), and sampled calls take turns, since seeding is global.
        self.workers = workers
        self._slots = threading.BoundedSemaphore(workers)
        self._sampling = threading.Lock()
        if workers > 1 and self.device == "cpu":
            torch.set_num_threads(max(1, torch.get_num_threads() // workers))

    @contextmanager
    def _turn(self, settings: GenerationSettings | None = None) -> Iterator[None]:
        """Held while a call uses the model: a worker's slot, and for a sampled call the seed's
        turn too (the random generator is global). The thread lets its OpenMP pool go at the end,
        so that no idle pool slows decoding in another thread (`openmp.py`)."""
        sampled = settings is not None and not settings.greedy
        with self._sampling if sampled else nullcontext(), self._slots:
            try:
                yield
            finally:
                openmp.release_idle_pool()

    @functools.cached_property
    def _head_apart(self) -> bool:
        """Whether `score` may take a text's logits SCORE_ROWS rows at a time from the hidden
        states (never a vocabulary row for every token of it at once): where the logits are the
        head's alone. Probed on the first `score`, not at load."""
        from metaaligner_chain.backends.transformers.head import logits_are_the_head_alone

        return logits_are_the_head_alone(self.lm)

    def _eos_ids(self) -> list[int]:
        eos = self.lm.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        return [eos] if isinstance(eos, int) else list(eos or [])

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text)["input_ids"])

    def score(
        self, prompt: str, continuations: Sequence[str], *, stop_below: float | None = None
    ) -> list[float]:
        """log P(text, then end-of-generation | prompt) for each text, in nats: how likely the
        model is to write exactly that answer (the gate compares a rewrite with the original).
        Each text is scored in one forward, so `stop_below` (score no further than needed to
        know a text falls below it) changes nothing here."""
        torch = self._torch
        (prompt_ids,) = self._encode([prompt])
        scores = []
        for text in continuations:
            ids = [*self.tokenizer(text, add_special_tokens=False)["input_ids"], self.eos_ids[0]]
            if len(prompt_ids) + len(ids) > self.context_length:
                raise PromptTooLongError(len(prompt_ids) + len(ids), self.context_length, self.model)
            with self._turn(), torch.inference_mode():
                # the prompt's KV from its generation (`prefixes`), logits only where the text is
                # predicted, a block of rows at a time: a vocabulary row takes ~0.2 MB (SmolLM2),
                # so a 300-token answer's logits at once would be 59 MB, its normalizer as much
                n, cache = start_cache(self.prefixes, [prompt_ids])
                rest = torch.tensor([prompt_ids[n:] + ids], device=self.device)
                mask = torch.ones((1, n + rest.shape[1]), dtype=torch.long)
                if self._head_apart:
                    rows = hidden_states(self.lm, cache, rest, mask, rest.shape[1])[0, -len(ids) - 1:-1]
                    head = self.lm.get_output_embeddings()
                else:
                    rows = forward(self.lm, cache, rest, mask, rest.shape[1], keep=len(ids) + 1)[0, :-1]
                    head = None
                target, picked = rest[0, -len(ids):, None], 0.0
                for block, want in zip(rows.split(SCORE_ROWS), target.split(SCORE_ROWS)):
                    block = (block if head is None else head(block)).float()
                    chosen = float(block.gather(-1, want).sum())  # before the block is overwritten
                    picked += chosen - float(_logsumexp_in_place(block).sum())
            scores.append(picked)
        return scores

    def _generate_kwargs(self, settings: GenerationSettings, longest_prompt: int) -> dict[str, Any]:
        room = self.context_length - longest_prompt
        kwargs: dict[str, Any] = {
            "max_new_tokens": min(settings.max_new_tokens, room),
            "do_sample": not settings.greedy,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.eos_ids,
        }
        if settings.repeat_guard:
            kwargs["logits_processor"] = _no_repeat_after(longest_prompt)
        if settings.greedy:  # keep the checkpoint's sampling defaults from leaking in
            kwargs.update(temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(temperature=settings.temperature, top_p=settings.top_p)
            if settings.seed is not None:
                self._torch.manual_seed(settings.seed)
        return kwargs

    def _encode(self, prompts: Sequence[str]) -> list[list[int]]:
        encoded = [self.tokenizer(p)["input_ids"] for p in prompts]
        for ids in encoded:
            if len(ids) >= self.context_length:
                raise PromptTooLongError(len(ids), self.context_length, self.model)
        return encoded

    def _finish(
        self, prompt_ids: list[int], new_ids: list[int], stats: dict[str, Any] | None = None
    ) -> Generation:
        stop = next((i for i, t in enumerate(new_ids) if t in self.eos_ids), None)
        kept = new_ids if stop is None else new_ids[:stop]
        return Generation(
            text=self.tokenizer.decode(kept, skip_special_tokens=True),
            finish_reason="length" if stop is None else "stop",
            prompt_tokens=len(prompt_ids),
            completion_tokens=len(kept) + (stop is not None),
            stats=stats,
        )

    def _drafted(
        self,
        encoded: list[list[int]],
        settings: GenerationSettings,
        responses: Sequence[str | None] | None,
        on_tokens: Any = None,
    ) -> list[Generation]:
        """Greedy decoding drafted from `responses` (one batch); see `drafting`."""
        sources = [
            self.tokenizer(r, add_special_tokens=False)["input_ids"] if r else None
            for r in (responses or [None] * len(encoded))
        ]
        limits = [min(settings.max_new_tokens, self.context_length - len(ids)) for ids in encoded]
        decoded = decode_greedy(
            self.lm,
            encoded,
            max_new_tokens=limits,
            eos_ids=self.eos_ids,
            pad_id=self.tokenizer.pad_token_id,
            responses=sources,
            prefix_cache=self.prefixes,
            on_tokens=on_tokens,
        )
        return [self._finish(ids, new, stats) for ids, (new, stats) in zip(encoded, decoded)]

    def generate(self, prompts: Sequence[str], settings: GenerationSettings,
                 responses: Sequence[str] | None = None) -> list[Generation]:
        encoded = self._encode(prompts)
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # length buckets
        size, shared = self.batch_size, self.workers > 1 and settings.greedy
        if shared:  # a greedy batch is split among the workers (sampled ones take turns anyway)
            size = min(size, -(-len(order) // self.workers))
        chunks = [order[start : start + size] for start in range(0, len(order), size)]

        def run(chunk: list[int]) -> list[tuple[int, Generation]]:
            with self._turn(settings), self._torch.inference_mode():
                return list(zip(chunk, self._chunk(encoded, chunk, settings, responses)))

        if shared and len(chunks) > 1:
            with ThreadPoolExecutor(min(self.workers, len(chunks))) as pool:
                done = [pair for part in pool.map(run, chunks) for pair in part]
        else:
            done = [pair for chunk in chunks for pair in run(chunk)]
        results = dict(done)
        return [results[i] for i in range(len(encoded))]

    def _chunk(self, encoded: list[list[int]], chunk: list[int], settings: GenerationSettings,
               responses: Sequence[str] | None) -> list[Generation]:
        """One batch of the prompts `encoded[i]` for i in `chunk`, in that order."""
        if _drafts(settings) and (len(chunk) == 1 or self.draft_batches):
            chunk_responses = [responses[i] for i in chunk] if responses else None
            return self._drafted([encoded[i] for i in chunk], settings, chunk_responses)
        batch = self.tokenizer.pad(
            {"input_ids": [encoded[i] for i in chunk]}, return_tensors="pt"
        ).to(self.device)
        width = batch["input_ids"].shape[1]
        out = self._generator.generate(**batch, **self._generate_kwargs(settings, width))
        return [self._finish(encoded[i], out[row, width:].tolist()) for row, i in enumerate(chunk)]

    def stream(
        self, prompt: str, settings: GenerationSettings, response: str | None = None
    ) -> Generator[str, None, Generation]:
        (ids,) = self._encode([prompt])
        streamer = _token_streamer(self.tokenizer)
        inputs = self._torch.tensor([ids], device=self.device)
        errors: list[BaseException] = []
        drafted: list[Generation] = []

        stop = threading.Event()

        def run() -> None:  # the worker holds the model, so an abandoned stream never blocks others
            try:
                with self._turn(settings), self._torch.inference_mode():
                    kwargs = self._generate_kwargs(settings, len(ids))  # seeds in its turn
                    if _drafts(settings):  # verified tokens stream as they come
                        streamer.next_tokens_are_prompt = False
                        drafted.extend(self._drafted([ids], settings, [response], streamer.put_ids))
                        streamer.end()
                        return
                    self._generator.generate(
                        input_ids=inputs,
                        attention_mask=self._torch.ones_like(inputs),
                        streamer=streamer,
                        stopping_criteria=_stopped_by(stop),
                        **kwargs,
                    )
            except BaseException as exc:  # surfaced in the consumer's thread below
                errors.append(exc)
                streamer.end()

        worker = threading.Thread(target=run, name="metaaligner-stream", daemon=True)
        openmp.release_idle_pool()  # this thread's idle pool would slow the worker's
        worker.start()
        try:
            for piece in streamer:
                if piece:
                    yield piece
        finally:
            stop.set()  # closed, cancelled or collected early: generation ends at the next token
        worker.join()  # the streamer has ended: so has the generation
        if errors:
            raise errors[0]
        return drafted[0] if drafted else self._finish(ids, streamer.new_ids)


#: Rows of a scored text normalized at a time (32 rows x 49k vocabulary = 6 MB in fp32).
SCORE_ROWS = 32
#: `repeat_guard`: no word-piece n-gram of this length twice in the new tokens (not tuned: the
#: default aligner is measured on llama.cpp, whose retry uses DRY instead).
NO_REPEAT_NGRAM = 4


def _logsumexp_in_place(block: Any) -> Any:
    """Each row's logsumexp, computed in `block` itself (overwritten), where `logsumexp` would
    hold a second buffer as large as it."""
    top = block.max(-1, keepdim=True).values
    return block.sub_(top).exp_().sum(-1).log_() + top.squeeze(-1)


def _drafts(settings: GenerationSettings) -> bool:
    """Whether a call goes through the drafted greedy loop (else transformers' `generate`)."""
    return settings.greedy and settings.drafting and not settings.repeat_guard


def _no_repeat_after(prompt_width: int) -> Any:
    """Transformers' `NoRepeatNGramLogitsProcessor` over the tokens after the (padded) prompt:
    the rewrite may copy the answer in its prompt, but not repeat its own phrases."""
    from transformers import LogitsProcessor, LogitsProcessorList, NoRepeatNGramLogitsProcessor

    class NewTokensOnly(LogitsProcessor):
        def __init__(self) -> None:
            self.inner = NoRepeatNGramLogitsProcessor(NO_REPEAT_NGRAM)

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            return self.inner(input_ids[:, prompt_width:], scores)

    return LogitsProcessorList([NewTokensOnly()])


def _stopped_by(event: threading.Event) -> Any:
    """A stopping criterion that ends generation once `event` is set."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Stopped(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full((input_ids.shape[0],), event.is_set(), dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([Stopped()])


def _token_streamer(tokenizer: Any) -> Any:
    """A `TextIteratorStreamer` that also keeps the generated token ids (to tell EOS from length)."""
    import torch
    from transformers import TextIteratorStreamer

    class TokenStreamer(TextIteratorStreamer):
        def put(self, value: Any) -> None:
            if not self.next_tokens_are_prompt:
                self.new_ids.extend(value.reshape(-1).tolist())
            super().put(value)

        def put_ids(self, _row: int, ids: list[int]) -> None:
            self.put(torch.tensor(ids))

    streamer = TokenStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
    streamer.new_ids = []
    return streamer
