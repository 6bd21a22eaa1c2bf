"""Invoke and batch: a batch of requests aligned at once, each output in its input's type.

`align` turns each request into its prompts (its parts when it is long, `chunking.parts`), runs
every prompt of the batch through one `generate` call, has the gate decide each, and renders one
output (or the input's own error) per request. `generate` drives the backend: streamed and cut
short on a prompt echo where the engine can, else one batched generation.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from metaaligner_chain import chunking, gate
from metaaligner_chain.backends import Capabilities
from metaaligner_chain.backends.base import AlignerConfigError
from metaaligner_chain.coerce import AlignRequest, coerce, render
from metaaligner_chain.objectives import resolve
from metaaligner_chain.tracing import end_model_run, report_verdict, start_model_run

if TYPE_CHECKING:
    from metaaligner_chain.runnable import MetaAlignerRunnable

def align_values(
    aligner: MetaAlignerRunnable, values: Sequence[Any], run_managers: Sequence[Any] | None = None,
    *, raise_errors: bool = False,
) -> list[Any]:
    """`align` on input values: one that cannot be read is its item's `TypeError`/`ValueError`
    (raised at once with `raise_errors`, as `invoke` does)."""
    requests: list[AlignRequest | Exception] = []
    for value in values:
        try:
            requests.append(coerce(value))
        except (TypeError, ValueError) as exc:
            if raise_errors:
                raise
            requests.append(exc)
    results = align(aligner, requests, run_managers)
    if raise_errors and (error := next((r for r in results if isinstance(r, Exception)), None)):
        raise error
    return results


def align(
    aligner: MetaAlignerRunnable, requests: Sequence[AlignRequest | Exception],
    run_managers: Sequence[Any] | None = None,
) -> list[Any]:
    """Align a batch: one output, or the input error for that item, per request.

    Bad input (a type we cannot read, an unknown objective) comes back as that item's exception;
    failures inside the aligner go through the gate. Each generation is traced as an LLM run
    under its item's run (`run_managers`, one per request).
    """
    prompt_format = aligner._prompt_format()
    results: list[Any] = list(requests)
    todo: list[tuple[int, AlignRequest, str]] = []  # (item, the item or one of its parts, prompt)
    for i, request in enumerate(requests):
        if isinstance(request, Exception):
            continue
        if request.untouched:  # e.g. an agent state ending in a tool call: not an answer
            results[i] = request.raw
            continue
        if not request.quoted:  # nothing to align: returned as it is, no model call
            results[i] = render(request, request.response, aligner._info(request, prompt_format, gate.EMPTY))
            continue
        try:
            found = chunking.parts(aligner, request, prompt_format)
            todo.extend((i, part, aligner._prompt(part, prompt_format)) for part in found)
        except AlignerConfigError:
            raise  # the set-up, not this item: every call would fail alike
        except (TypeError, ValueError) as exc:
            results[i] = exc
    scaffolds = [aligner._scaffold(r, prompt_format) for _, r, _ in todo]
    parents = run_managers or [None] * len(requests)
    runs = [start_model_run(parents[i], p, aligner._get_ls_params()) for i, _, p in todo]
    outcomes = generate(aligner, [p for _, _, p in todo], [r for _, r, _ in todo], scaffolds)
    for run, outcome in zip(runs, outcomes):
        end_model_run(run, outcome)
    decided: dict[int, list[tuple[AlignRequest, gate.Verdict]]] = {}
    for (i, part, _), outcome, scaffold in zip(todo, outcomes, scaffolds):
        found_verdict = gate.decide(
            part.response, outcome, strict=aligner.strict, scaffold=scaffold,
            objectives=resolve(aligner._objectives(part), prompt_format),
        )
        decided.setdefault(i, []).append((part, found_verdict))
    for i, pairs in decided.items():
        request = requests[i]
        found_verdict, info = chunking.verdict(aligner, request, prompt_format, pairs)
        report_verdict(parents[i], info)
        results[i] = render(request, found_verdict.text, info)
    return results


def generate(
    aligner: MetaAlignerRunnable, prompts: list[str], requests: Sequence[AlignRequest], scaffolds: list[str]
) -> list[Any]:
    """One generation or exception per prompt; a failing item does not fail the others.

    A backend with the `early_stop` capability (one sequence or request per prompt: llama.cpp,
    a server) streams each prompt, `concurrency` at once, and is cut short once its start
    echoes the prompt, which the gate would reject anyway; others batch in `generate`.
    """
    if not prompts:
        return []
    responses, settings = [r.quoted for r in requests], aligner.settings()
    backend = aligner.load_backend()  # one that cannot load is an `AlignerConfigError`, raised
    capabilities = getattr(backend, "capabilities", None) or Capabilities()
    if capabilities.early_stop:
        def watched(prompt: str, response: str, scaffold: str) -> Any:
            stream = backend.stream(prompt, settings, response)
            return gate.watch(gate.until_template(stream, response), original=response, scaffold=scaffold)

        workers = min(len(prompts), capabilities.concurrency)
        if workers <= 1:
            return list(map(watched, prompts, responses, scaffolds))
        with ThreadPoolExecutor(workers, thread_name_prefix="metaaligner") as pool:
            return list(pool.map(watched, prompts, responses, scaffolds))
    try:
        return list(backend.generate(prompts, settings, responses))
    except Exception as exc:
        if len(prompts) == 1:
            return [exc]
    outcomes: list[Any] = []  # find the item(s) that failed
    for prompt, response in zip(prompts, responses):
        try:
            outcomes.extend(backend.generate([prompt], settings, [response]))
        except Exception as exc:
            outcomes.append(exc)
    return outcomes
