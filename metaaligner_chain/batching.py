"""Invoke and batch: a batch of requests aligned at once, each output in its input's type.

`align` turns each request into its parts (itself when it is short, `chunking.parts`) and aligns
them in rounds: part k of every request in one `generate` call, each part after the first with
the last sentence of the one before as aligned in its context; the gate decides each, and one
output (or the input's own error) is rendered per request. `generate` drives the backend: streamed and cut
short on a prompt echo where the engine can, else one batched generation.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from metaaligner_chain import chunking, gate, selection
from metaaligner_chain.backends import Capabilities
from metaaligner_chain.backends.base import AlignerConfigError, GenerationSettings, derived_seed
from metaaligner_chain.coerce import AlignRequest, coerce
from metaaligner_chain.objectives import resolve
from metaaligner_chain.render import render
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
    prompt_format, keep_margin = aligner._prompt_format(), aligner.resolved_keep_margin()
    candidates = aligner.resolved_candidates()
    original_margin = aligner.resolved_original_margin() if candidates > 1 else None
    results: list[Any] = list(requests)
    todo: dict[int, list[AlignRequest]] = {}  # item → its parts (the item itself when it is short)
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
            todo[i] = chunking.parts(aligner, request, prompt_format)
            aligner._prompt(todo[i][0], prompt_format)  # a bad objective is this item's error
        except AlignerConfigError:
            raise  # the set-up, not this item: every call would fail alike
        except (TypeError, ValueError) as exc:
            results[i] = exc
            todo.pop(i, None)
    parents = run_managers or [None] * len(requests)
    decided: dict[int, list[tuple[AlignRequest, gate.Verdict]]] = {i: [] for i in todo}
    for k in range(max(map(len, todo.values()), default=0)):  # part k of every item in one round
        round_ = [(i, chunking.after(parts[k], decided[i])) for i, parts in todo.items() if k < len(parts)]
        verdicts = _generate_round(aligner, round_, prompt_format, keep_margin,
                                   (candidates, original_margin), parents)
        for (i, part), found_verdict in zip(round_, verdicts):
            decided[i].append((part, found_verdict))
    for i, pairs in decided.items():
        request = requests[i]
        found_verdict, info = chunking.verdict(aligner, request, prompt_format, pairs)
        report_verdict(parents[i], info)
        results[i] = render(request, found_verdict.text, info)
    return results


def _generate_round(
    aligner: MetaAlignerRunnable, round_: list[tuple[int, AlignRequest]], prompt_format: str,
    keep_margin: float | dict[str, float] | None, choice: tuple[int, float | None],
    parents: Sequence[Any],
) -> list[gate.Verdict]:
    """The gate's verdict on each (item, part) of one round, all generated in one `generate` call,
    each traced as an LLM run under its item's run; rewrites turned down for looping or running
    to the token limit are generated once more with a repetition guard (`retry_loops`); cheap
    edits give way to the original (`keep_cheap_edits`). `choice`: how many candidates, and the
    `original_margin` among them (`selection.choose`)."""
    parts = [part for _, part in round_]
    prompts = [aligner._prompt(part, prompt_format) for part in parts]
    scaffolds = [aligner._scaffold(part, prompt_format) for part in parts]
    objectives = [resolve(aligner._objectives(part), prompt_format) for part in parts]
    backend = aligner.load_backend()
    capabilities = getattr(backend, "capabilities", None) or Capabilities()
    retry = aligner.retry_loops and capabilities.repeat_guard
    margins = [gate.margin_for(keep_margin if capabilities.scoring else None, o) for o in objectives]

    def attempt(indices: list[int], settings: list[GenerationSettings]) -> list[Any]:
        runs = [start_model_run(parents[round_[j][0]], prompts[j], aligner._get_ls_params()) for j in indices]
        outcomes = generate(aligner, [prompts[j] for j in indices], [parts[j] for j in indices],
                            [scaffolds[j] for j in indices], [settings[j] for j in indices])
        for run, outcome in zip(runs, outcomes):
            end_model_run(run, outcome)
        return outcomes

    def judged(j: int, outcome: Any, final: bool) -> gate.Verdict:
        # a first attempt that may still be retried is neither raised (strict) nor logged
        return gate.decide(parts[j].response, outcome, strict=aligner.strict and final,
                           scaffold=scaffolds[j], objectives=objectives[j], log=final)

    def decided(settings: list[GenerationSettings]) -> list[gate.Verdict]:
        """The gate's verdicts on one decoding of every part (`settings`: one per part), each
        rewrite turned down for a loop or a cut decoded once more with the repetition guard."""
        outcomes = attempt(list(range(len(parts))), settings)
        verdicts = [judged(j, outcome, final=not retry) for j, outcome in enumerate(outcomes)]
        if not retry:
            return verdicts
        again = [j for j, verdict in enumerate(verdicts) if gate.worth_retrying(verdict)]
        if aligner.strict:  # a failure no retry can fix is raised as without retries
            for j in (j for j, verdict in enumerate(verdicts) if not verdict.aligned and j not in again):
                judged(j, outcomes[j], final=True)
        guarded = [replace(s, repeat_guard=True, record_logprobs=False) for s in settings]
        for j, outcome in zip(again, attempt(again, guarded)):
            verdicts[j] = replace(judged(j, outcome, final=True), retried=verdicts[j].fallback_reason)
        return verdicts

    # the keep test scores each rewrite: a drafted decoding can keep its tokens' log-probabilities
    settings = replace(aligner.settings(), record_logprobs=any(m is not None for m in margins))
    verdicts = decided([settings] * len(parts))
    candidates, original_margin = choice
    if candidates > 1:  # more rewrites, sampled: the one they share wins
        pool = [verdicts] + [decided([aligner.candidate_settings(c, prompt) for prompt in prompts])
                             for c in range(1, candidates)]
        verdicts = [selection.choose(part.response, [found[j] for found in pool],
                                     original_margin=original_margin)
                    for j, part in enumerate(parts)]
    return keep_cheap_edits(backend, margins, prompts, parts, verdicts)


def keep_cheap_edits(
    backend: Any, margins: Sequence[float | None], prompts: list[str], parts: list[AlignRequest],
    verdicts: list[gate.Verdict],
) -> list[gate.Verdict]:
    """`verdicts` with each rewrite `backend` scores within its part's margin of a copy of the
    original given back the original (`gate.keep_cheap_edit`); a part whose margin is None (off,
    or an engine that cannot score) keeps its verdict. A scoring failure keeps the rewrite (it
    passed the gate). The rewrite is scored first, so that scoring the copy can stop as soon as
    it is sure to fall short of the rewrite's score plus the margin."""
    kept = []
    for prompt, part, verdict, margin in zip(prompts, parts, verdicts, margins):
        if margin is not None and verdict.aligned and verdict.text != part.quoted.strip():
            try:
                (rewrite,) = backend.score(prompt, [verdict.text])
                (copy,) = backend.score(prompt, [part.quoted], stop_below=rewrite + margin)
            except Exception as exc:  # noqa: BLE001 - the rewrite stands; say why it was not checked
                gate.logger.warning("MetaAligner could not score the rewrite against the original: %s", exc)
            else:
                verdict = gate.keep_cheap_edit(verdict, part.response, [copy, rewrite], margin)
        kept.append(verdict)
    return kept


def generate(
    aligner: MetaAlignerRunnable, prompts: list[str], requests: Sequence[AlignRequest],
    scaffolds: list[str], settings: Sequence[GenerationSettings] | None = None,
) -> list[Any]:
    """One generation or exception per prompt; a failing item does not fail the others.

    A backend with the `early_stop` capability (one sequence or request per prompt: llama.cpp,
    a server) streams each prompt, `concurrency` at once, and is cut short once its start
    echoes the prompt, which the gate would reject anyway; others batch in `generate`.
    `settings`: one per prompt (sampled candidates differ in their seeds; default: the aligner's).
    """
    if not prompts:
        return []
    responses = [r.quoted for r in requests]
    settings = list(settings or [aligner.settings()] * len(prompts))
    backend = aligner.load_backend()  # one that cannot load is an `AlignerConfigError`, raised
    capabilities = getattr(backend, "capabilities", None) or Capabilities()
    if capabilities.early_stop:
        def watched(prompt: str, response: str, scaffold: str, settings: GenerationSettings) -> Any:
            stream = backend.stream(prompt, settings, response)
            return gate.watch(gate.until_template(stream, response), original=response, scaffold=scaffold)

        workers = min(len(prompts), capabilities.concurrency)
        if workers <= 1:
            return list(map(watched, prompts, responses, scaffolds, settings))
        with ThreadPoolExecutor(workers, thread_name_prefix="metaaligner") as pool:
            return list(pool.map(watched, prompts, responses, scaffolds, settings))
    try:
        return list(backend.generate(prompts, batch_settings(settings), responses))
    except Exception as exc:
        if len(prompts) == 1:
            return [exc]
    outcomes: list[Any] = []  # find the item(s) that failed
    for prompt, response, own in zip(prompts, responses, settings):
        try:
            outcomes.extend(backend.generate([prompt], own, [response]))
        except Exception as exc:
            outcomes.append(exc)
    return outcomes


def batch_settings(settings: Sequence[GenerationSettings]) -> GenerationSettings:
    """One engine call's settings for prompts given one each: they differ only in the seeds of
    sampled candidates, and a batch's rows draw their own numbers from one generator, seeded
    here from all of them (the same prompts batched alike get the same samples)."""
    if all(s == settings[0] for s in settings):
        return settings[0]
    return replace(settings[0], seed=derived_seed(repr([s.seed for s in settings])))
