"""llama.cpp engine: raw-prompt completion of a GGUF aligner, exactly like the released inference.

The prompt is tokenized as is (no chat template) with the special tokens the model's tokenizer adds
by default (BOS for the Llama-family MetaAligner checkpoints), decoded greedily when temperature is
0, and stopped at end-of-generation. One `Llama` per backend (found, checked and loaded by
`loading`), used by one caller at a time; the tokens of one completion come from `decoding`:
greedy calls given the response draft from it (`drafting`), `settings.repeat_guard` decodes with
llama.cpp's DRY sampler (`sampling`). Earlier prompts' KV caches are kept per objective preamble
(`PrefixCache`). Neither drafting nor the cache changes a single output token.
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import metaaligner_chain.backends.openmp as openmp
from metaaligner_chain.backends.base import (
    Capabilities,
    Generation,
    GenerationSettings,
    PromptTooLongError,
    stream_in_worker,
)
from metaaligner_chain.backends.llamacpp.decoding import Tally, continuation, text_pieces
from metaaligner_chain.backends.llamacpp.drafting import (
    RecentLogprobs,
    Scored,
    continuation_logprobs,
)
from metaaligner_chain.backends.llamacpp.loading import (
    INITIAL_CONTEXT,
    check_lora,
    check_model,
    default_threads,
    import_llama_cpp,
    load_llama,
    locate,
)
from metaaligner_chain.backends.llamacpp.prefix import PrefixCache
from metaaligner_chain.models.metadata import metaaligner_keys


class LlamaCppBackend:
    """A GGUF aligner run by llama.cpp (llama-cpp-python), safe to share between threads.

    Args:
        model: path to a `.gguf` file, or a hub repo id when `hub_file` names a file in it.
        lora_path: a GGUF LoRA adapter (`general.type = adapter`) applied on top of `model`.
        n_ctx: context window to allocate, rounded up to a multiple of 256. `None` starts at 2048
            tokens (or the trained context, if smaller) and grows, up to the trained context, when
            a request needs more room for its prompt plus `max_new_tokens`; a number is fixed.
        n_threads: CPU threads; default: the CPUs this process may use (at most 8). On an idle
            2-core machine 2 threads decode 1.46x faster than 1 (benchmarks/RESULTS.md), but
            llama.cpp's threads busy-wait, so when they compete with other work (a policy model
            generating at the same time, other processes) decoding slows several-fold: then
            pass fewer threads than cores.
        n_gpu_layers: layers offloaded to a GPU build of llama.cpp (`-1`: all).
        prefix_cache: how many earlier prompts' KV caches to keep (one per objective preamble),
            so calls that alternate between objective sets still skip their preamble; each holds
            one prompt's KV cache (about 23 kB a token for SmolLM2-135M). 0 keeps only
            llama-cpp-python's reuse of the previous call's prefix.
        hub_file: file name inside hub repo `model` (downloaded once, then read from the cache).
        verbose: let llama.cpp print its load and timing logs.

    Access to the one `Llama` is serialized: `generate` holds it per prompt, a `stream` decodes
    in a worker thread that holds it while decoding (an abandoned stream stops at its next token
    when closed, or at its token limit when merely dropped: it never blocks other callers), and
    so does a `locked_llama()` block. Each call reuses the KV cache of the prefix it shares with the previous one, or with an
    earlier prompt kept by `prefix_cache` (the objectives preamble; `snapshot_restores` counts
    these). When greedy with `settings.drafting` and given the response, tokens copied from the
    response are drafted and checked several per forward pass; `Generation.stats` then counts
    drafted and accepted tokens. On the CPU, flash attention and 32-token batches make every path
    give the tokens of one-at-a-time greedy decoding (a GPU build batches prompts by 512 and does
    not promise this to the last bit).

    Example:
        >>> backend = LlamaCppBackend("aligner.Q4_K_M.gguf")
        >>> backend.generate([prompt], GenerationSettings(max_new_tokens=256))[0].text
        >>> "".join(backend.stream(prompt, GenerationSettings()))
    """

    name = "llama.cpp"
    #: One sequence at a time, so each prompt is streamed and stopped early on a prompt echo.
    capabilities = Capabilities(early_stop=True, drafting=True, prefix_reuse=True, repeat_guard=True,
                                scoring=True)

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        lora_path: str | os.PathLike[str] | None = None,
        n_ctx: int | None = None,
        n_threads: int | None = None,
        n_gpu_layers: int = 0,
        hub_file: str | None = None,
        prefix_cache: int = 4,
        verbose: bool = False,
    ):
        import_llama_cpp()
        self.model = str(model)
        self.path = locate(model, hub_file)
        header = check_model(self.path, self.model)
        self.architecture = header["general.architecture"]
        self.lora_path = None if lora_path is None else check_lora(lora_path, self.architecture)
        trained = header.get(f"{self.architecture}.context_length")
        self.context_length = int(trained) if trained else INITIAL_CONTEXT
        if n_ctx is not None and not 0 < n_ctx <= self.context_length:
            raise ValueError(
                f"`n_ctx` is {n_ctx} but {self.model!r} was trained with a context of "
                f"{self.context_length} tokens. Pass 1 <= n_ctx <= {self.context_length}, or None "
                "to size the context to each request."
            )
        self._fixed_ctx = n_ctx is not None
        # SentencePiece vocabularies (the Llama-family checkpoints) mark a word start with a
        # space; Hugging Face's decode drops it on the answer's first token, and so does this.
        self._strip_first_space = header.get("tokenizer.ggml.model") == "llama" and bool(
            header.get("tokenizer.ggml.add_space_prefix", True)
        )
        self._options = {
            "n_threads": n_threads or default_threads(),
            "n_gpu_layers": n_gpu_layers,
            "verbose": verbose,
        }
        self.metadata: dict[str, Any] = {
            **metaaligner_keys(header),
            "context_length": self.context_length,
        }
        self._lock = threading.Lock()
        self._prefixes = PrefixCache(prefix_cache)
        self._decoded = RecentLogprobs()  # recent decodings that recorded their log-probabilities
        self._scored = RecentLogprobs(size=1)  # the last text scored whole
        self._llama = self._load(n_ctx or min(INITIAL_CONTEXT, self.context_length))
        _open.add(self)

    def __repr__(self) -> str:
        lora = f", lora_path={str(self.lora_path)!r}" if self.lora_path else ""
        return f"LlamaCppBackend({self.model!r}{lora})"

    @property
    def n_ctx(self) -> int:
        """The context window allocated now (at most `context_length`; 0 once closed)."""
        return 0 if self._llama is None else self._llama.n_ctx()

    @property
    def window(self) -> int:
        """Tokens a prompt and its answer may take together: the `n_ctx` given, else the trained
        context (the allocation grows to it on demand)."""
        return min(self.n_ctx, self.context_length) if self._fixed_ctx else self.context_length

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` as it is written into a prompt (no BOS)."""
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    @property
    def snapshot_restores(self) -> int:
        """Calls so far that started from a `prefix_cache` snapshot of an earlier prompt rather
        than from the live KV cache."""
        return self._prefixes.restored

    def generate(self, prompts: Sequence[str], settings: GenerationSettings,
                 responses: Sequence[str] | None = None) -> list[Generation]:
        """Complete each prompt in turn (llama.cpp decodes one sequence at a time).

        With `settings.drafting` and greedy settings, `responses[i]` (the answer that prompt `i`
        rewrites) seeds copy-aware speculative decoding: same tokens, fewer forward passes.
        """
        if responses is not None and len(responses) != len(prompts):
            raise ValueError(
                f"`responses` has {len(responses)} items but `prompts` has {len(prompts)}; pass "
                "one response per prompt, or None."
            )
        generations = []
        for i, prompt in enumerate(prompts):
            tally = Tally()
            with self.locked_llama():
                response = None if responses is None else responses[i]
                text = "".join(self._decode(prompt, settings, tally, response))
            generations.append(tally.generation(text))
        return generations

    def stream(
        self, prompt: str, settings: GenerationSettings, response: str | None = None
    ) -> Generator[str, None, Generation]:
        """Yield the new text as it is decoded (pieces never split a UTF-8 character); return
        the finished `Generation`."""
        def produce(emit: Callable[[str], None], stop: threading.Event) -> Generation:
            tally, pieces = Tally(), []
            with self.locked_llama():
                decoding = self._decode(prompt, settings, tally, response)
                for piece in decoding:
                    if stop.is_set():  # the consumer went away: free the model now
                        decoding.close()
                        break
                    pieces.append(piece)
                    emit(piece)
            return tally.generation("".join(pieces))

        return (yield from stream_in_worker(produce))

    def score(
        self, prompt: str, continuations: Sequence[str], *, stop_below: float | None = None
    ) -> list[float]:
        """log P(text, then end-of-generation | prompt) for each text, in nats: how likely the
        model is to write exactly that answer (the gate compares a rewrite with the original).

        A text's first tokens shared with the text scored last, or with a recent drafted
        decoding after this prompt that recorded its log-probabilities
        (`GenerationSettings.record_logprobs`), are not evaluated again: a rewrite mostly starts
        as its original does, and a rewrite just decoded is not evaluated at all. (Texts scored
        earlier are not remembered, so a repeated request costs what it did the first time.) With
        `stop_below`, a text is scored only until its log-probability so far falls below that
        value: its score is then below `stop_below` and no lower than the true one (the keep
        test only asks whether the original scores at least the rewrite plus the margin).
        """
        tokens = self._llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        eos = self._llama.token_eos()
        scores = []
        for text in continuations:
            ids = [*self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=True), eos]
            with self.locked_llama():
                logprobs = max(self._decoded.known(tokens, ids), self._scored.known(tokens, ids),
                               key=len)
                if len(logprobs) < len(ids):
                    self._make_room(len(tokens), len(ids))
                    self._prefixes.restore(self._llama, tokens)
                    logprobs = continuation_logprobs(self._llama, tokens, ids, logprobs, stop_below)
                    if len(logprobs) == len(ids):
                        self._scored.add(tokens, Scored(ids, logprobs))
            scores.append(float(sum(logprobs)))
        return scores

    @contextmanager
    def locked_llama(self) -> Iterator[Any]:
        """The loaded `llama_cpp.Llama`, held for this caller alone until the block ends.

        For what the backend does not wrap: tokenizing, or timing llama.cpp itself. The next call
        reuses the KV cache the block leaves for the prefix it shares with its prompt, so a block
        that evaluates tokens of its own leaves `input_ids[:n_tokens]` true to the cache, or calls
        `reset()`. The block's thread lets its OpenMP pool go at the end, so that no idle pool
        slows decoding in another thread (`openmp.py`).
        """
        with self._lock:
            if self._llama is None:
                raise RuntimeError(
                    f"{self!r} was closed. Load the model again (`clear_backends()` first when "
                    "it came from `get_backend`)."
                )
            try:
                yield self._llama
            finally:
                openmp.release_idle_pool()

    def close(self) -> None:
        """Free the model and its context now; the backend cannot generate afterwards."""
        with self._lock:
            if self._llama is not None:
                self._llama.close()
                self._llama = None

    # -- helpers -------------------------------------------------------------------------------

    def _decode(
        self,
        prompt: str,
        settings: GenerationSettings,
        tally: Tally,
        response: str | None = None,
    ) -> Iterator[str]:
        """The text pieces of one completion (`decoding`), behind `generate` and `stream`; call
        it holding the lock and consume it before releasing it."""
        import llama_cpp

        if settings.max_new_tokens < 1:
            raise ValueError(
                f"`max_new_tokens` is {settings.max_new_tokens}; it must be at least 1."
            )
        tokens = self._llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        if not tokens:
            raise ValueError(
                "the prompt is empty; pass the aligner prompt built by `build_prompt`."
            )
        tally.prompt_tokens = len(tokens)
        self._make_room(len(tokens), settings.max_new_tokens)
        llama = self._llama
        room = min(llama.n_ctx(), self.context_length)  # llama.cpp may round the context up
        budget = min(settings.max_new_tokens, room - len(tokens))
        llama.set_seed(llama_cpp.LLAMA_DEFAULT_SEED if settings.seed is None else settings.seed)
        self._prefixes.restore(llama, tokens)
        token_ids = continuation(llama, prompt, tokens, settings, budget, response, tally)
        pieces = text_pieces(llama, token_ids, budget, tally, self._strip_first_space)
        return pieces if tally.scored is None else self._recorded(pieces, tokens, tally)

    def _recorded(self, pieces: Iterator[str], tokens: list[int], tally: Tally) -> Iterator[str]:
        """`pieces`, then the decoding's log-probabilities kept for `score` if it reached
        end-of-generation (the text `score` is given ends with it)."""
        yield from pieces
        if tally.finish_reason == "stop":
            self._decoded.add(tokens, tally.scored)

    def _load(self, n_ctx: int) -> Any:
        return load_llama(self.path, self.lora_path, n_ctx, self._options, model=self.model,
                          architecture=self.architecture)

    def _make_room(self, prompt_tokens: int, max_new_tokens: int) -> None:
        """Grow the context (up to the trained one) so the prompt and the answer fit, or raise."""
        current = min(self._llama.n_ctx(), self.context_length)
        limit = current if self._fixed_ctx else self.context_length
        if prompt_tokens >= limit:
            error = PromptTooLongError(prompt_tokens, limit, self.model)
            if limit < self.context_length:
                error.args = (
                    f"{error.args[0]} Or load it with a larger `n_ctx` (now {limit}; up to "
                    f"{self.context_length}), or n_ctx=None to size it per request.",
                )
            raise error
        need = prompt_tokens + max_new_tokens
        if self._fixed_ctx or need <= current:
            return
        grown = min(self.context_length, 1 << (need - 1).bit_length())
        self._llama.close()  # free the old context before allocating the larger one
        self._llama = None  # if the reload fails, later calls say the backend is closed
        self._llama = self._load(grown)


_open: weakref.WeakSet[LlamaCppBackend] = weakref.WeakSet()


@atexit.register
def _close_open_backends() -> None:
    # Freed at interpreter exit, llama-cpp-python's finalizers raise "NoneType is not callable".
    for backend in list(_open):
        backend.close()

