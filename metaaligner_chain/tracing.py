"""The aligner's generation as a traced model call: one LLM child run per aligned item, with its
prompt, the model's answer and its token usage, so LangSmith (or any callback handler) sees the
aligner as a model call with tokens. The run records what the model wrote (when streaming, what
the gate let through); the gate's decision is the parent run's output.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, LLMResult

#: The LLM run's name in traces.
RUN_NAME = "MetaAligner model"
#: The custom event each aligned item reports to callbacks (and `astream_events`): the gate's
#: verdict and the original response, also for `str` input, whose output has no metadata.
VERDICT_EVENT = "metaaligner_verdict"


def start_model_run(parent: Any, prompt: str, params: dict[str, Any]) -> Any:
    """An LLM run under `parent` (a chain run's manager, sync or async; None: not traced)."""
    if parent is None:
        return None
    if hasattr(parent, "get_sync"):  # an async run manager; this code runs in a worker thread
        parent = parent.get_sync()
    (run,) = parent.get_child().on_llm_start(
        {"name": RUN_NAME}, [prompt], invocation_params=params, name=RUN_NAME
    )
    return run


def end_model_run(run: Any, outcome: Any) -> None:
    """Close `run` with `outcome`: a generation (or verdict) with its tokens, or an exception."""
    if run is None:
        return
    if isinstance(outcome, BaseException):
        run.on_llm_error(outcome)
        return
    usage = usage_of(outcome)
    message = AIMessage(outcome.text, usage_metadata=usage)
    generation = ChatGeneration(
        message=message, generation_info={"finish_reason": outcome.finish_reason}
    )
    run.on_llm_end(LLMResult(generations=[[generation]], llm_output={"token_usage": usage or {}}))


def report_verdict(parent: Any, info: dict[str, Any]) -> None:
    """Send `info` (the item's metadata: original, aligned, fallback_reason, ...) to the
    callbacks of `parent`'s run as a `VERDICT_EVENT` custom event."""
    if parent is None:
        return
    if hasattr(parent, "get_sync"):  # an async run manager; this code runs in a worker thread
        parent = parent.get_sync()
    parent.get_child().on_custom_event(VERDICT_EVENT, info, run_id=parent.run_id)


def usage_of(outcome: Any) -> dict[str, int] | None:
    """LangChain's usage metadata for a generation or verdict that counted its tokens."""
    completion = getattr(outcome, "completion_tokens", None)
    if not completion:
        return None
    prompt = getattr(outcome, "prompt_tokens", None) or 0
    return {
        "input_tokens": prompt,
        "output_tokens": completion,
        "total_tokens": prompt + completion,
    }


def verdict_info(
    request: Any, verdict: Any, objectives: list[Any], prompt_format: str, model: str
) -> dict[str, Any]:
    """The metadata of one aligned item (`request`, an `AlignRequest`, and the gate's `verdict`):
    what its output carries and `report_verdict` sends; the original always in it."""
    return {
        "original": request.response,
        "objectives": [o.key for o in objectives],
        "prompt_format": prompt_format,
        "model": model,
        "changed": verdict.text.strip() != request.quoted,
        "aligned": verdict.aligned,
        "fallback_reason": verdict.fallback_reason,
        "finish_reason": verdict.finish_reason,
        "completion_tokens": verdict.completion_tokens,
        "usage": usage_of(verdict),
        **({"rejected": verdict.rejected} if verdict.rejected is not None else {}),
        **({"retried": verdict.retried} if verdict.retried else {}),
        **({"kept": verdict.kept} if verdict.kept else {}),
        **({"chosen": list(verdict.chosen), "candidates": list(verdict.candidates or ()),
            "fell_back": [{"candidate": i, "rejected": text}
                          for i, text in verdict.fell_back or ()]}
           if verdict.chosen else {}),
    }
