"""llama.cpp engine: raw-prompt completion of a GGUF aligner, exactly like the released inference.

The prompt is tokenized as is (no chat template) with the special tokens the model's tokenizer adds
by default (BOS for the Llama-family MetaAligner checkpoints), decoded greedily when temperature is
0, and stopped at end-of-generation. One `Llama` per backend, used by one caller at a time.
Greedy calls given the response draft from it (`drafting`); earlier prompts' KV caches
are kept per objective preamble (`PrefixCache`). Neither changes a single output token.
"""

from __future__ import annotations

import atexit
import codecs
import ctypes
import os
import threading
import weakref
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metaaligner_chain.backends.base import (
    Capabilities,
    Generation,
    GenerationSettings,
    PromptTooLongError,
    stream_in_worker,
)
from metaaligner_chain.backends.llamacpp.drafting import DraftTally, drafted_greedy, response_span
from metaaligner_chain.backends.llamacpp.prefix import PrefixCache
from metaaligner_chain.drafting import CopyDrafter
from metaaligner_chain.models.gguf_header import BYTE_TOKENS, read_gguf_header
from metaaligner_chain.models.hub import hub_load_options
from metaaligner_chain.models.metadata import metaaligner_keys

#: Context allocated at load when `n_ctx` is not given; it grows on demand up to the trained one.
INITIAL_CONTEXT = 2048
#: llama.cpp rounds every context up to a multiple of this; llama-cpp-python does not (it sizes its
#: token buffer by the requested value), so contexts are rounded here before loading.
CONTEXT_STEP = 256
#: Largest CPU batch (prompt chunk or draft check) whose results match one-token decoding.
EXACT_BATCH = 32
#: `CopyDrafter` settings for drafted decoding: draft lengths in tokens per forward pass (a
#: rejected draft token costs most of a plain step on a CPU, so drafts start short), and how far
#: past the copy position a single matching token may re-synchronize.
DRAFTER = {"min_draft": 2, "max_draft": EXACT_BATCH // 2, "start_draft": 4, "window": 2}
#: Default thread cap: a small aligner gains little from more cores.
MAX_DEFAULT_THREADS = 8
_INSTALL = 'pip install "metaaligner-chain[gguf]"'


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
    capabilities = Capabilities(early_stop=True, drafting=True, prefix_reuse=True)

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
        _import_llama_cpp()
        self.model = str(model)
        self.path = _locate(model, hub_file)
        header = read_gguf_header(self.path, field="model")
        if header.get("general.type") == "adapter":
            raise ValueError(
                f"`model` {self.model!r} is a LoRA adapter, not a model. Pass its base model as "
                "`model` and this file as `lora_path`."
            )
        _check_vocabulary(header, self.path)
        self.architecture = header["general.architecture"]
        self.lora_path = None if lora_path is None else _check_lora(lora_path, self.architecture)
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

    def generate(
        self,
        prompts: Sequence[str],
        settings: GenerationSettings,
        responses: Sequence[str] | None = None,
    ) -> list[Generation]:
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
            tally = _Tally()
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
            tally, pieces = _Tally(), []
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

    @contextmanager
    def locked_llama(self) -> Iterator[Any]:
        """The loaded `llama_cpp.Llama`, held for this caller alone until the block ends.

        For what the backend does not wrap: tokenizing, or timing llama.cpp itself. The next call
        reuses the KV cache the block leaves for the prefix it shares with its prompt, so a block
        that evaluates tokens of its own leaves `input_ids[:n_tokens]` true to the cache, or calls
        `reset()`.
        """
        with self._lock:
            if self._llama is None:
                raise RuntimeError(
                    f"{self!r} was closed. Load the model again (`clear_backends()` first when "
                    "it came from `get_backend`)."
                )
            yield self._llama

    def close(self) -> None:
        """Free the model and its context now; the backend cannot generate afterwards."""
        with self._lock:
            if self._llama is not None:
                self._llama.close()
                self._llama = None

    # -- helpers -------------------------------------------------------------------------------

    def _load(self, n_ctx: int):
        from llama_cpp import Llama

        try:
            llama = Llama(
                model_path=str(self.path),
                lora_path=None if self.lora_path is None else str(self.lora_path),
                n_ctx=-(-n_ctx // CONTEXT_STEP) * CONTEXT_STEP,
                n_threads_batch=self._options["n_threads"],
                # With flash attention and batches under 64 tokens, llama.cpp's CPU kernels give
                # a token the same logits whatever else shares its batch (otherwise they drift by
                # up to ~0.9 on SmolLM2): drafted decoding, prefix snapshots and the previous
                # call's reused prefix then all give exactly the tokens of one-at-a-time decoding.
                flash_attn=True,
                n_batch=EXACT_BATCH if not self._options["n_gpu_layers"] else 512,
                **self._options,
            )
        except (ValueError, RuntimeError) as err:
            raise ValueError(
                f"llama.cpp could not load `model` {str(self.path)!r} (GGUF architecture "
                f"{self.architecture!r}). Either this llama.cpp build ({_llama_version()}) does "
                f"not support architecture {self.architecture!r} (upgrade llama-cpp-python, or use "
                "backend='transformers' with the original checkpoint), or the file is damaged "
                "(download or export it again)."
            ) from err
        # llama-cpp-python checks the adapter pointer with `is None`, so a LoRA that llama.cpp
        # rejects (a NULL pointer object) is silently skipped; check it here.
        if self.lora_path is not None and not getattr(llama, "_lora_adapter", None):
            llama.close()
            raise ValueError(
                f"llama.cpp could not apply `lora_path` {str(self.lora_path)!r} to "
                f"{self.model!r}: its tensor names or shapes do not match the model's. Pass the "
                "adapter converted from a LoRA trained on this base model."
            )
        return llama

    def _decode(
        self,
        prompt: str,
        settings: GenerationSettings,
        tally: _Tally,
        response: str | None = None,
    ) -> Iterator[str]:
        """The one decoding loop behind `generate` and `stream`; call it holding the lock."""
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
        vocab = llama._model.vocab
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._prefixes.restore(llama, tokens)
        for token in self._tokens(prompt, tokens, settings, budget, response, tally):
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                tally.finish_reason = "stop"
                break
            tally.completion_tokens += 1
            strip = int(self._strip_first_space and tally.completion_tokens == 1)
            piece = utf8.decode(_piece(vocab, token, strip))
            if piece:
                yield piece
            if tally.completion_tokens >= budget:
                tally.finish_reason = "length"
                break
        rest = utf8.decode(b"", final=True)
        if rest:
            yield rest

    def _tokens(
        self,
        prompt: str,
        tokens: list[int],
        settings: GenerationSettings,
        budget: int,
        response: str | None,
        tally: _Tally,
    ) -> Iterator[int]:
        """The continuation's tokens: drafted from `response` when greedy and asked for, else
        llama.cpp's own sampling loop. Both give the same greedy tokens."""
        llama = self._llama
        if settings.drafting and settings.greedy and response:
            span = response_span(llama, prompt, tokens, response)
            drafter = CopyDrafter(span, context=tokens, **DRAFTER)
            tally.drafts = DraftTally()
            return drafted_greedy(llama, tokens, drafter, budget, tally.drafts)
        temp, top_p = (0.0, 1.0) if settings.greedy else (settings.temperature, settings.top_p)
        return llama.generate(  # top_k=0, min_p=0, typical_p=1: only temp and top_p act
            tokens, temp=temp, top_p=top_p, top_k=0, min_p=0.0, typical_p=1.0, repeat_penalty=1.0
        )

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


@dataclass
class _Tally:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "length"
    drafts: DraftTally | None = None

    def generation(self, text: str) -> Generation:
        stats = None if self.drafts is None else self.drafts.as_stats()
        return Generation(
            text, self.finish_reason, self.prompt_tokens, self.completion_tokens, stats
        )


def _piece(vocab, token: int, lstrip: int = 0) -> bytes:
    """The bytes of one token, special tokens rendered as nothing (`skip_special_tokens`)."""
    import llama_cpp

    size = 64
    while True:
        buffer = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_token_to_piece(vocab, token, buffer, size, lstrip, False)
        if n >= 0:
            return buffer.raw[:n]
        size = -n


def _locate(model: str | os.PathLike[str], hub_file: str | None) -> Path:
    """The local GGUF file for `model`, downloading `hub_file` from hub repo `model` if asked."""
    path = Path(model).expanduser()
    if hub_file is None or path.exists():
        if path.is_dir():
            raise IsADirectoryError(
                f"`model` {str(model)!r} is a directory. Pass the .gguf file inside it, or a "
                "hub repo id with `hub_file`."
            )
        if not path.is_file():
            raise FileNotFoundError(
                f"`model` {str(model)!r} does not exist. Pass the path of a .gguf file, or a hub "
                "repo id with `hub_file='<name>.gguf'`."
            )
        return path
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as err:
        raise ImportError(
            "loading `model` from a hub repo needs huggingface-hub: `pip install huggingface-hub`."
        ) from err
    options = hub_load_options(str(model), hub_file)  # at once, not after a minute of retries
    try:
        return Path(hf_hub_download(repo_id=str(model), filename=hub_file, **options))
    except Exception as err:
        raise OSError(
            f"could not fetch `hub_file` {hub_file!r} from hub repo `model` {str(model)!r} "
            f"({err}). Without hub access, copy the file here and pass its local path as `model`."
        ) from err


def _check_lora(lora_path: str | os.PathLike[str], architecture: str) -> Path:
    path = Path(lora_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"`lora_path` {str(lora_path)!r} does not exist. Pass a GGUF LoRA file."
        )
    header = read_gguf_header(path, field="lora_path")
    if header.get("general.type") != "adapter" or header.get("adapter.type") != "lora":
        raise ValueError(
            f"`lora_path` {str(lora_path)!r} is not a GGUF LoRA adapter (general.type="
            f"{header.get('general.type')!r}, adapter.type={header.get('adapter.type')!r}). "
            "Convert a peft adapter with llama.cpp's convert_lora_to_gguf.py."
        )
    if header["general.architecture"] != architecture:
        raise ValueError(
            f"`lora_path` {str(lora_path)!r} is for architecture "
            f"{header['general.architecture']!r} but the model is {architecture!r}. Pass the "
            "adapter trained on this base model."
        )
    return path


def _check_vocabulary(header: dict[str, Any], path: Path) -> None:
    # llama.cpp's SentencePiece tokenizer spells unknown characters with <0xNN> byte tokens and
    # aborts the whole process (an uncaught C++ exception) when one is missing.
    if header.get("tokenizer.ggml.model") == "llama" and header.get(BYTE_TOKENS, 256) < 256:
        raise ValueError(
            f"`model` {str(path)!r} has a SentencePiece vocabulary without the 256 byte tokens "
            f"(<0x00>..<0xFF>; found {header[BYTE_TOKENS]}); llama.cpp would abort on the first "
            "character outside the vocabulary. Convert the model again with its full tokenizer."
        )


def default_threads() -> int:
    """CPU threads a backend uses when `n_threads` is not given: the CPUs this process may use,
    at most `MAX_DEFAULT_THREADS`."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(available or 1, MAX_DEFAULT_THREADS))


def _import_llama_cpp():
    try:
        import llama_cpp
    except ImportError as err:
        raise ImportError(f"the llama.cpp backend needs llama-cpp-python: `{_INSTALL}`.") from err
    return llama_cpp


def _llama_version() -> str:
    return f"llama-cpp-python {getattr(_import_llama_cpp(), '__version__', '?')}"
