"""The aligner under evaluation: built from a model spec or wrapped from any Runnable/callable,
run one row at a time so each answer gets its own latency, its output and metadata recorded.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.evaluate import ledger

_TOKEN_KEYS = ("completion_tokens", "generated_tokens", "output_tokens", "new_tokens", "tokens")


@dataclass(frozen=True)
class AlignerUnderTest:
    """`run` maps one {"query", "response"} row to the aligner's output; `name` keys the cache;
    `prompt_format` is the aligner's own (for the judges' objective wording) when known;
    `load` loads the model so that loading time stays out of the per-item latency."""

    run: Callable[[dict], Any]
    name: str
    prompt_format: str | None = None
    load: Callable[[], Any] | None = None


def as_aligner(
    aligner: Any, objectives: Sequence[Any], prompt_format: str | None,
    max_new_tokens: int | None,
) -> AlignerUnderTest:
    """"default" or a model path/hub id → `MetaAlignerRunnable`; a Runnable or callable as is."""
    if aligner is None or isinstance(aligner, (str, Path)):
        from langchain_core.messages import AIMessage

        from metaaligner_chain import MetaAlignerRunnable

        model = None if aligner in (None, "default") else str(aligner)
        kwargs = {"max_new_tokens": max_new_tokens} if max_new_tokens else {}
        runnable = MetaAlignerRunnable(
            objectives=list(objectives), model=model, prompt_format=prompt_format, **kwargs
        )

        def run(row: dict) -> Any:  # a message response brings back the aligner's metadata
            return runnable.invoke({"query": row["query"], "response": AIMessage(row["response"])})

        found = runnable.resolved_prompt_format()
        name = f"{model or 'default'}|{found}|{max_new_tokens}|" + ",".join(map(str, objectives))
        return AlignerUnderTest(run, name, found, runnable.load_backend)
    name = getattr(aligner, "name", None) or getattr(aligner, "__name__", None)
    name = name or type(aligner).__name__
    if hasattr(aligner, "invoke"):
        return AlignerUnderTest(aligner.invoke, str(name))
    if callable(aligner):
        return AlignerUnderTest(aligner, str(name))
    raise TypeError(
        f"`aligner` is a {type(aligner).__name__}; pass 'default', a model path/hub id, a "
        "Runnable or a callable taking {'query', 'response'}."
    )


def align(rows: list[dict], aligner: AlignerUnderTest, cache: Path, bar: Any) -> list[dict]:
    """Rows with `aligned`, `latency_s`, `tokens` and aligner `metadata`; cached rows reused."""
    done = ledger.read(cache)
    task = bar.add_task("aligning", total=len(rows))
    items, loaded = [], False
    for row in rows:
        key = ledger.stable_hash(row["item"], aligner.name)
        if key not in done:
            if aligner.load is not None and not loaded:
                aligner.load()
                loaded = True
            start = time.perf_counter()
            result = aligner.run({"query": row["query"], "response": row["response"]})
            latency = time.perf_counter() - start
            text, tokens, source, meta = aligned_text(result)
            done[key] = {"key": key, "item": row["item"], "aligner": aligner.name,
                         "aligned": text, "latency_s": latency, "tokens": tokens,
                         "tokens_source": source, "metadata": meta}
            ledger.append(cache, done[key])
        rec = done[key]
        fields = ("aligned", "latency_s", "tokens", "tokens_source", "metadata")
        items.append({**row, **{k: rec[k] for k in fields}})
        bar.advance(task)
    return items


def aligned_text(result: Any) -> tuple[str, int, str, dict]:
    """(aligned answer, output tokens, where the token count came from, aligner metadata).

    Tokens come from the aligner's metadata when it reports them, else words + punctuation.
    """
    value = result["response"] if isinstance(result, Mapping) else result
    meta = dict((getattr(value, "response_metadata", None) or {}).get("metaaligner") or {})
    meta.pop("original", None)
    text = str(getattr(value, "content", value))
    for key in _TOKEN_KEYS:
        if isinstance(meta.get(key), int):
            return text, meta[key], "aligner", meta
    return text, len(re.findall(r"\w+|[^\w\s]", text)), "approx (words+punctuation)", meta
