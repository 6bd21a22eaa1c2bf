"""The contract every engine meets: raw-prompt completion, greedy by default, stop at EOS.

A backend knows nothing about objectives or LangChain: it turns prompt strings into generations.
`response` (the answer being rewritten) is passed along so an engine may draft from it
(copy-aware speculative decoding); output must not depend on whether it is used.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import metaaligner_chain.backends.openmp as openmp


@dataclass(frozen=True)
class GenerationSettings:
    """How to decode. `temperature == 0` means greedy, as in the released inference."""

    max_new_tokens: int = 1024
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    #: Draft from the response being rewritten and verify in one forward pass (same output).
    drafting: bool = True
    #: Penalize the continuation for repeating its own phrases (an engine with the
    #: `repeat_guard` capability: llama.cpp's DRY sampler, transformers' no-repeat n-gram rule
    #: over the new tokens). Used for the one retry of a rewrite the gate found looping; the
    #: output is then no longer plain greedy decoding, so drafting is off.
    repeat_guard: bool = False
    #: Keep each greedy token's log-probability, so that `score` of the text just written, after
    #: the same prompt, reads it instead of evaluating it again (the keep test scores every
    #: rewrite). An engine that cannot (or a decoding that is not greedy) ignores it.
    record_logprobs: bool = False

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


def derived_seed(key: str) -> int:
    """A sampling seed (31 bits, what every engine accepts) that `key` alone determines."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") & 0x7FFFFFFF


@dataclass(frozen=True)
class Generation:
    """One completion: the new text only, and why decoding stopped (`"stop"` at EOS, or `"length"`)."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    #: Engine-specific counters (e.g. drafted / accepted tokens).
    stats: dict[str, Any] | None = None


class PromptTooLongError(ValueError):
    """The prompt does not fit in the model's context window."""

    def __init__(self, prompt_tokens: int, context_length: int, model: str):
        super().__init__(
            f"the aligner prompt is {prompt_tokens} tokens but model {model!r} has a context of "
            f"{context_length} tokens (and needs room to write the answer). Shorten the context "
            "or the response, or use an aligner with a longer context."
        )
        self.prompt_tokens = prompt_tokens
        self.context_length = context_length


class AlignerConfigError(ValueError):
    """The aligner is set up wrong: its model cannot be found or loaded, a needed extra is missing,
    or its server cannot be reached when it is first used.

    Raised by invoke and batch (sync and async) whatever `strict` is: a set-up that cannot work is
    not a failed generation, which the gate answers with the original response. The message says
    what to fix; the loader's own error is its `__cause__`.
    """


@dataclass(frozen=True)
class Capabilities:
    """What an engine does beyond completing prompts; the runnable asks these, never its name.

    A new engine gets a behaviour by implementing it and declaring it here.
    """

    #: Align each prompt through `stream`, so the gate stops an answer that starts by echoing its
    #: prompt (or goes on into a second template round) as soon as it shows. For engines that
    #: decode one sequence at a time (llama.cpp) or one request per prompt (a server); an engine
    #: that batches prompts in one `generate` call leaves it off.
    early_stop: bool = False
    #: How many of those streams may run at once (a server's request bound; 1: one at a time).
    concurrency: int = 1
    #: Drafts from `response` when `settings.drafting` is on (copy-aware speculative decoding, the
    #: engine's own loop around the shared `metaaligner_chain.drafting.CopyDrafter`); same tokens.
    drafting: bool = False
    #: Keeps the KV cache of earlier prompts' shared prefix (the objectives preamble) in process.
    prefix_reuse: bool = False
    #: Honours `settings.repeat_guard` (else a looping rewrite is not retried).
    repeat_guard: bool = False
    #: Has `score(prompt, texts, *, stop_below=None)`: each text's log-probability as the answer
    #: to `prompt` (the gate's `keep_margin` test; without it the test is skipped). With
    #: `stop_below` an engine may stop scoring a text once it is sure to fall below that value,
    #: returning any value below it and no lower than the true score; it may also ignore it.
    scoring: bool = False


@runtime_checkable
class Backend(Protocol):
    """An engine that completes raw prompts. Implementations must be safe to call from threads."""

    name: str
    model: str
    capabilities: Capabilities
    #: The model's trained context window in tokens (0 when the engine cannot tell: a server
    #: that does not report it).
    context_length: int
    #: `metaaligner.*` metadata found with the model (prompt format, objectives, base model).
    metadata: dict[str, Any]

    def generate(self, prompts: Sequence[str], settings: GenerationSettings,
                 responses: Sequence[str] | None = None) -> list[Generation]:
        """Complete every prompt (batched where the engine can); one `Generation` each, in order."""
        ...

    def stream(
        self, prompt: str, settings: GenerationSettings, response: str | None = None
    ) -> Generator[str, None, Generation | None]:
        """Yield the new text of one completion piece by piece; the pieces join to `generate`'s text.

        The generator returns (``StopIteration.value``) the finished `Generation`, so callers
        using ``result = yield from backend.stream(...)`` learn the finish reason and counts.
        """
        ...


_END = object()


def stream_in_worker(
    produce: Callable[[Callable[[str], None], threading.Event], Generation],
    name: str = "metaaligner-stream",
) -> Generator[str, None, Generation]:
    """Run `produce(emit, stop)` in its own thread and yield each piece it emits as it comes.

    The worker, not the consumer, holds the engine while it decodes, so a stream the caller
    abandons never blocks other callers: closing or cancelling it sets `stop` (the producer
    ends at its next token); one merely dropped, or kept but no longer read, runs to its token
    limit and lets go. The pieces wait in an unbounded queue, at most one generation's worth.
    The generator returns the producer's `Generation`; its exception is raised here.
    """
    pieces: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["generation"] = produce(pieces.put, stop)
        except BaseException as exc:  # surfaced in the consumer's thread below
            outcome["error"] = exc
        finally:
            pieces.put(_END)

    openmp.release_idle_pool()  # this thread's idle pool would slow the worker's
    threading.Thread(target=run, name=name, daemon=True).start()
    try:
        while (piece := pieces.get()) is not _END:
            yield piece
    finally:
        stop.set()  # closed, cancelled or garbage-collected early: the producer stops
    if "error" in outcome:
        raise outcome["error"]
    return outcome["generation"]
