"""Copy-aware speculative decoding on a llama-cpp-python `Llama`: greedy tokens, fewer forwards.

`drafted_greedy` yields exactly the tokens greedy decoding would, but checks a draft copied from
the response (`CopyDrafter`) in one llama.cpp batch: the last token plus k draft tokens are
evaluated together, logits are requested only at those k + 1 positions, the longest prefix of the
draft that agrees with the model's argmax is kept with the model's own next token, and the KV
cache is cut back to the accepted tokens. `response_span` finds the response's tokens inside the
prompt's. `continuation_logprobs` scores a given continuation with the same batched forwards, and
`RecentLogprobs` keeps the log-probabilities of recent drafted decodings so that scoring what was
just written needs no forward at all. The caller owns the `Llama` (holds its lock) and stops at
EOS and the token budget.
"""

from __future__ import annotations

import ctypes
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from metaaligner_chain.backends.llamacpp.loading import EXACT_BATCH
from metaaligner_chain.drafting import CopyDrafter, common_prefix


@dataclass
class DraftTally:
    """Counters of one drafted decoding: draft tokens checked and kept, forward passes run."""

    drafted: int = 0
    accepted: int = 0
    forwards: int = 0

    def as_stats(self) -> dict[str, float | int]:
        rate = self.accepted / self.drafted if self.drafted else 0.0
        return {
            "drafted_tokens": self.drafted,
            "accepted_tokens": self.accepted,
            "acceptance": rate,
            "forward_passes": self.forwards,
        }


@dataclass
class Scored:
    """The tokens a greedy decoding yielded, and each one's log-probability in nats."""

    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)


class RecentLogprobs:
    """The `Scored` tokens of the last `size` texts decoded to end-of-generation (or scored) after
    their prompts: `known` gives the log-probabilities of a text's first tokens that one of them
    shares after the same prompt (all of them when it is that text), exactly as
    `continuation_logprobs` would compute them (the same forwards, batches of at most
    `EXACT_BATCH`)."""

    def __init__(self, size: int = 64):
        self._entries: deque[tuple[tuple[int, ...], Scored]] = deque(maxlen=size)

    def add(self, prompt_tokens: Sequence[int], scored: Scored) -> None:
        self._entries.append((tuple(prompt_tokens), scored))

    def known(self, prompt_tokens: Sequence[int], continuation: Sequence[int]) -> list[float]:
        prompt, best = tuple(prompt_tokens), []
        for tokens, scored in reversed(self._entries):
            if tokens == prompt:
                shared = scored.logprobs[: common_prefix(scored.tokens, continuation)]
                best = shared if len(shared) > len(best) else best
        return best


def drafted_greedy(
    llama, tokens: Sequence[int], drafter: CopyDrafter, budget: int, tally: DraftTally,
    scored: Scored | None = None,
) -> Iterator[int]:
    """Greedy continuation of prompt `tokens` (at most `budget` tokens), drafted from `drafter`.

    Between yields the `Llama`'s KV cache, `input_ids` and `n_tokens` agree on a prefix of the
    prompt and the continuation (at least all yielded tokens but the last, as in
    `Llama.generate`), so the caller may stop at any token and the next call reuses the prefix.
    With `scored` (empty), each token and its log-probability are added to it as the token is
    yielded.
    """
    vocab_size = llama.n_vocab()

    def chosen(i: int) -> tuple[int, float | None]:
        best = _argmax(llama, i, vocab_size)
        return best, None if scored is None else _logprob(llama, i, vocab_size, best)

    eval_prompt(llama, tokens)
    pending = [chosen(-1)]
    tally.forwards += 1
    generated: list[int] = [] if scored is None else scored.tokens
    while True:
        for token, logprob in pending:
            generated.append(token)
            if scored is not None:
                scored.logprobs.append(logprob)
            yield token
        room = budget - len(generated)  # tokens still allowed; the bonus token takes one
        if room <= 0:
            return
        draft = drafter.propose(generated)[: room - 1]
        batch = [generated[-1], *draft]
        n_past = llama.n_tokens
        _decode(llama, batch, n_past)
        tally.forwards += 1
        pending = []
        for i in range(len(batch)):
            best, logprob = chosen(i)
            pending.append((best, logprob))
            if i == len(draft) or best != draft[i]:
                break
        accepted = len(pending) - 1
        kept = n_past + 1 + accepted  # the last token and the accepted draft stay in the cache
        llama._ctx.kv_cache_seq_rm(-1, kept, -1)
        llama.input_ids[n_past:kept] = batch[: accepted + 1]
        llama.n_tokens = kept
        if draft:
            drafter.update(len(draft), accepted)
            tally.drafted += len(draft)
            tally.accepted += accepted


def response_span(llama, prompt: str, tokens: Sequence[int], response: str) -> list[int]:
    """The prompt tokens that spell `response` (its last occurrence in `prompt`), exactly as the
    model read them; tokens straddling its ends count. Tokenized alone if it cannot be located."""
    start = prompt.rfind(response) if response else -1
    if start < 0:
        return []
    start = len(prompt[:start].encode("utf-8"))
    end = start + len(response.encode("utf-8"))
    pieces = [token_bytes(llama, t, special=True) for t in tokens]
    shift = sum(map(len, pieces)) - len(prompt.encode("utf-8"))  # BOS text, SentencePiece space
    if shift < 0 or b"".join(pieces)[shift:] != prompt.encode("utf-8"):
        return llama.tokenize((" " + response).encode("utf-8"), add_bos=False, special=True)
    span, offset = [], -shift
    for token, piece in zip(tokens, pieces):
        if offset < end and offset + len(piece) > start:
            span.append(token)
        offset += len(piece)
    return span


def eval_prompt(llama, tokens: Sequence[int]) -> None:
    """Evaluate `tokens`, reusing the cached prefix as `Llama.generate` does; logits: last only."""
    common = 0
    for cached, token in zip(llama._input_ids.tolist(), tokens):
        if cached != token:
            break
        common += 1
    keep = min(common, len(tokens) - 1)  # re-evaluate at least one token to get its logits
    if keep > 0 and llama._ctx.kv_cache_seq_rm(-1, keep, -1):
        llama.n_tokens = keep
    else:
        llama.reset()
    llama.eval(list(tokens[llama.n_tokens :]))
    llama._requires_eval = True  # later logits will not be those of the cached tokens' end


#: Continuation tokens per scoring forward: no more logit rows than a drafted step asks for
#: (`decoding.DRAFTER`'s longest draft plus one), so scoring never grows llama.cpp's output buffer.
SCORE_BATCH = EXACT_BATCH // 2


def continuation_logprobs(
    llama, tokens: Sequence[int], continuation: Sequence[int], known: Sequence[float] = (),
    stop_below: float | None = None,
) -> list[float]:
    """log P(each continuation token | tokens and the ones before it) under the model: one
    forward per `SCORE_BATCH` continuation tokens after the prompt (its cached prefix reused).
    `known` holds the log-probabilities of the continuation's first tokens, already computed
    (a text scored or decoded before shares them): they are taken as they are, and the forwards
    start after them, from the cache the previous text left (batches up to `EXACT_BATCH` give the
    same logits however the text is split). With `stop_below`, no forward follows once their sum
    falls below it (each token only lowers it): the list is then shorter than the continuation.
    Leaves the cache holding the prompt and the tokens evaluated, as `locked_llama` asks."""
    vocab_size = llama.n_vocab()
    known = list(known[: len(continuation) - 1])
    if stop_below is not None and known and sum(known) < stop_below:
        return known
    prefix = [*tokens, *continuation[: len(known)]]
    rest = continuation[len(known):]
    eval_prompt(llama, prefix)
    logprobs = [*known, _logprob(llama, -1, vocab_size, rest[0])]
    n_past = len(prefix)
    for start in range(0, len(rest) - 1, SCORE_BATCH):
        if stop_below is not None and sum(logprobs) < stop_below:
            break
        batch = rest[start:start + SCORE_BATCH]
        _decode(llama, batch, n_past)
        for i, target in enumerate(rest[start + 1:start + 1 + len(batch)]):
            logprobs.append(_logprob(llama, i, vocab_size, target))
        llama.input_ids[n_past:n_past + len(batch)] = batch
        n_past += len(batch)
        llama.n_tokens = n_past
    return logprobs


def _logprob(llama, i: int, vocab_size: int, token: int) -> float:
    """log-softmax of output row `i` of the last decode, at `token`."""
    logits = np.ctypeslib.as_array(llama._ctx.get_logits_ith(i), shape=(vocab_size,))
    top = float(logits.max())
    return float(logits[token]) - top - float(np.log(np.exp(logits - top, dtype=np.float64).sum()))


def _decode(llama, batch: Sequence[int], n_past: int) -> None:
    """One llama.cpp forward over `batch` at positions n_past.., logits at every position."""
    llama._ctx.kv_cache_seq_rm(-1, n_past, -1)
    raw = llama._batch.batch
    raw.n_tokens = len(batch)
    for i, token in enumerate(batch):
        raw.token[i] = token
        raw.pos[i] = n_past + i
        raw.seq_id[i][0] = 0
        raw.n_seq_id[i] = 1
        raw.logits[i] = True
    llama._ctx.decode(llama._batch)


def _argmax(llama, i: int, vocab_size: int) -> int:
    """The greedy token at output row `i` of the last decode (the first maximum, like llama.cpp)."""
    logits = np.ctypeslib.as_array(llama._ctx.get_logits_ith(i), shape=(vocab_size,))
    return int(logits.argmax())


def token_bytes(llama, token: int, *, lstrip: int = 0, special: bool = False) -> bytes:
    """The bytes of one token: special tokens rendered as their text when `special`, else as
    nothing (`skip_special_tokens`); `lstrip` drops that many leading spaces."""
    import llama_cpp

    vocab, size = llama._model.vocab, 64
    while True:
        buffer = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_token_to_piece(vocab, token, buffer, size, lstrip, special)
        if n >= 0:
            return buffer.raw[:n]
        size = -n
