"""OpenAI-compatible server engine: the raw aligner prompt to `/v1/completions` of vLLM, TGI or
llama.cpp's server, one request per prompt, at most `max_concurrency` in flight.

The server holds the model; this side only builds requests (greedy unless `temperature > 0`), reads
answers and their SSE streams through the `openai` client (timeouts, retries with backoff on
connection errors, 429 and 5xx), and turns what goes wrong into errors that name the field, the
value and the fix. Loading asks `GET /v1/models`: the server must be up and serve `model`.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from metaaligner_chain.backends.base import (
    Capabilities,
    Generation,
    GenerationSettings,
    PromptTooLongError,
)

#: Where `api_key` is read from when not given; servers started without a key need none.
API_KEY_ENV = "METAALIGNER_API_KEY"
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 2
DEFAULT_MAX_CONCURRENCY = 8
#: Sent with every request unless `extra_body` says otherwise: llama.cpp's server penalizes
#: repeats by default (1.1), which changes greedy output; the released inference does not.
#: Servers ignore fields they do not know (vLLM logs them); pass `extra_body={}` to send none.
NEUTRAL_SAMPLING = {"repeat_penalty": 1.0}
_INSTALL = 'pip install "metaaligner-chain[endpoint]"'
_SERVE = ("`vllm serve MetaAligner/MetaAligner-HH-RLHF-1.1B` or "
          "`python -m llama_cpp.server --model aligner.gguf`")


class EndpointBackend:
    """An aligner behind an OpenAI-compatible `/v1/completions`, safe to share between threads.

    Args:
        model: the served model's name (as `GET /v1/models` lists it); `None` takes the server's
            only model. An http(s) URL here is taken as `base_url` (with `model=None`).
        base_url: the server's OpenAI API root, e.g. ``http://127.0.0.1:8000/v1``.
        api_key: sent as a bearer token; default: the `METAALIGNER_API_KEY` environment variable,
            else none (a server started without `--api-key`).
        timeout: seconds to wait for the server on each request (connect, and between pieces).
        max_retries: retries of a request that failed to connect, timed out, or got 429/5xx.
        max_concurrency: requests in flight at once from this backend (batches and streams).
        extra_body: extra request fields; default `NEUTRAL_SAMPLING`.

    Example:
        >>> backend = EndpointBackend("aligner", base_url="http://127.0.0.1:8000/v1")
        >>> backend.generate([prompt], GenerationSettings(max_new_tokens=256))[0].text
    """

    name = "endpoint"

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        extra_body: dict[str, Any] | None = None,
    ):
        openai = _import_openai()
        if base_url is None and str(model or "").lower().startswith(("http://", "https://")):
            base_url, model = model, None
        if not base_url:
            raise ValueError(
                "`base_url` is None; the endpoint backend needs the server's address. Pass "
                "base_url='http://host:port/v1' and model=<the served model's name>."
            )
        if max_concurrency < 1:
            raise ValueError(f"`max_concurrency` is {max_concurrency}; pass 1 or more.")
        self.base_url = str(base_url).rstrip("/")
        #: Streams each prompt (the gate stops an echo early), `max_concurrency` at once; drafting
        #: and prefix reuse are the server's own (e.g. vLLM's prefix caching, ngram speculation).
        self.capabilities = Capabilities(early_stop=True, concurrency=max_concurrency)
        self._extra_body = dict(NEUTRAL_SAMPLING if extra_body is None else extra_body)
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._client = openai.OpenAI(
            base_url=self.base_url,
            api_key=api_key or os.environ.get(API_KEY_ENV) or "none",
            timeout=timeout,
            max_retries=max_retries,
        )
        served = self._served_models()
        self.model = _pick_model(model, served, self.base_url)
        self.context_length = int(served[self.model].get("max_model_len") or 0)
        self.metadata: dict[str, Any] = {
            "base_url": self.base_url, "context_length": self.context_length,
        }

    def __repr__(self) -> str:
        return f"EndpointBackend({self.model!r}, base_url={self.base_url!r})"

    def generate(
        self,
        prompts: Sequence[str],
        settings: GenerationSettings,
        responses: Sequence[str] | None = None,
    ) -> list[Generation]:
        """Complete every prompt, `max_concurrency` requests at a time; one `Generation` each, in
        order. The first failing request's error is raised. `responses` is not used."""
        if len(prompts) <= 1:
            return [self._complete(p, settings) for p in prompts]
        workers = min(len(prompts), self.capabilities.concurrency)
        with ThreadPoolExecutor(workers, thread_name_prefix="metaaligner-endpoint") as pool:
            return list(pool.map(lambda p: self._complete(p, settings), prompts))

    def stream(
        self, prompt: str, settings: GenerationSettings, response: str | None = None
    ) -> Generator[str, None, Generation]:
        """Yield the answer's pieces from the server's SSE stream; return the finished
        `Generation`. Closing the generator closes the connection (the server stops).

        A stream that ends before its first piece without saying why (llama.cpp's server reports
        an error raised after the stream began, such as a context overflow, that way) is asked
        once more without streaming, which returns the answer or raises the server's error."""
        text, finish, pieces, usage = [], None, 0, None
        with self._slots:
            stream = self._request(prompt, settings, stream=True)
            try:
                for chunk in stream:
                    usage = getattr(chunk, "usage", None) or usage
                    if not chunk.choices:
                        continue
                    choice = chunk.choices[0]
                    if choice.text:
                        pieces += 1
                        text.append(choice.text)
                        yield choice.text
                    finish = choice.finish_reason or finish
            except Exception as exc:
                raise self._broken(exc, len("".join(text))) from exc
            finally:
                stream.close()
        if finish is None and not text:
            generation = self._complete(prompt, settings)
            if generation.text:
                yield generation.text
            return generation
        if finish is None:  # a finished answer always says why it ended
            raise ConnectionError(
                f"the aligner server at `base_url` {self.base_url!r} ended its stream after "
                f"{len(''.join(text))} characters without a finish reason: it was cut short. "
                "llama.cpp's server cuts a stream when another request arrives unless started "
                "with `--interrupt_requests false`."
            )
        prompt_tokens = getattr(usage, "prompt_tokens", 0) or 0
        completion_tokens = getattr(usage, "completion_tokens", 0) or pieces
        return Generation("".join(text), finish, prompt_tokens, completion_tokens)

    def close(self) -> None:
        """Close the client's connections."""
        self._client.close()

    # -- helpers -------------------------------------------------------------------------------

    def _complete(self, prompt: str, settings: GenerationSettings) -> Generation:
        with self._slots:
            answer = self._request(prompt, settings, stream=False)
        choice, usage = answer.choices[0], answer.usage
        return Generation(
            choice.text or "", choice.finish_reason or "length",
            getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0,
        )

    def _request(self, prompt: str, settings: GenerationSettings, *, stream: bool) -> Any:
        """One `/completions` request; a prompt that fits but leaves less room than
        `max_new_tokens` is sent again once with the room left, as the in-process engines cap it."""
        import openai

        if settings.max_new_tokens < 1:
            raise ValueError(
                f"`max_new_tokens` is {settings.max_new_tokens}; it must be at least 1."
            )
        greedy = settings.greedy
        request = {
            "model": self.model, "prompt": prompt, "max_tokens": settings.max_new_tokens,
            "temperature": 0.0 if greedy else settings.temperature,
            "top_p": 1.0 if greedy else settings.top_p, "stream": stream,
            "extra_body": self._extra_body,
        }
        if settings.seed is not None:
            request["seed"] = settings.seed
        for attempt in range(2):
            try:
                return self._client.completions.create(**request)
            except openai.APIConnectionError as exc:  # timeouts included, after the retries
                raise self._unreachable(exc) from exc
            except openai.NotFoundError as exc:
                raise ValueError(
                    f"the server at `base_url` {self.base_url!r} has no model `model` "
                    f"{self.model!r} ({_message(exc)}). Pass the name `GET {self.base_url}/models` "
                    "lists."
                ) from exc
            except openai.BadRequestError as exc:
                context, used = _context_overflow(_message(exc))
                if context is None:
                    raise ValueError(
                        f"the server at `base_url` {self.base_url!r} refused the request: "
                        f"{_message(exc)}"
                    ) from exc
                if attempt == 0 and used is not None and used < context:
                    request["max_tokens"] = context - used
                    continue
                error = PromptTooLongError(used or 0, context, self.model)
                error.args = (f"{error.args[0]} (server: {_message(exc)})",)
                raise error from exc
            except openai.APIStatusError as exc:  # 5xx after the retries, 401, 403, ...
                raise RuntimeError(
                    f"the server at `base_url` {self.base_url!r} answered HTTP "
                    f"{exc.status_code}: {_message(exc)}. Check the server's log"
                    + (", and `api_key`." if exc.status_code in (401, 403) else ".")
                ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _served_models(self) -> dict[str, dict[str, Any]]:
        import openai

        try:
            listed = self._client.models.list()
        except openai.APIConnectionError as exc:
            raise self._unreachable(exc) from exc
        except openai.NotFoundError as exc:
            raise ValueError(
                f"`base_url` {self.base_url!r} has no `/models`: OpenAI-compatible servers answer "
                "under their API root, usually ending in /v1. Pass e.g. "
                "base_url='http://host:port/v1'."
            ) from exc
        except openai.APIStatusError as exc:
            raise RuntimeError(
                f"the server at `base_url` {self.base_url!r} answered HTTP {exc.status_code} to "
                f"GET /models: {_message(exc)}. Check `api_key` and the server's log."
            ) from exc
        return {m.id: m.model_dump() for m in listed.data}

    def _unreachable(self, exc: Exception) -> ConnectionError:
        return ConnectionError(
            f"cannot reach the aligner server at `base_url` {self.base_url!r} "
            f"({type(exc).__name__}: {exc}). Start it ({_SERVE}) or fix `base_url`; a slow "
            "server may need a larger `timeout`."
        )

    def _broken(self, exc: Exception, sent: int) -> ConnectionError:
        return ConnectionError(
            f"the aligner server at `base_url` {self.base_url!r} broke off its answer after "
            f"{sent} characters ({type(exc).__name__}: {exc}). Check that it is still running."
        )


def _pick_model(model: str | None, served: dict[str, dict[str, Any]], base_url: str) -> str:
    names = ", ".join(repr(n) for n in served) or "none"
    if model is None:
        if len(served) == 1:
            return next(iter(served))
        raise ValueError(
            f"`model` is None and the server at `base_url` {base_url!r} serves {names}. Pass "
            "model=<one of those names>."
        )
    if model not in served:
        raise ValueError(
            f"`model` is {model!r} but the server at `base_url` {base_url!r} serves {names}. "
            "Pass one of those names as `model` (or None when it serves one model)."
        )
    return model


def _context_overflow(message: str) -> tuple[int | None, int | None]:
    """(context length, prompt tokens) from a server's context-overflow message; else Nones.

    llama.cpp: "maximum context length is 2048 tokens, however you requested 2100 tokens (1900 in
    your prompt; ...)"; vLLM: "... (1900 in the messages, ...)" or "... has 1900 input tokens".
    """
    context = re.search(r"maximum context length is (\d+)", message)
    if context is None:
        return None, None
    used = re.search(r"\((\d+) in (?:your prompt|the messages)|has (\d+) input tokens", message)
    prompt = None if used is None else int(used.group(1) or used.group(2))
    return int(context.group(1)), prompt


def _message(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        found = body.get("message") or (body.get("error") or {}).get("message")
        if found:
            return str(found)
    return str(getattr(exc, "message", None) or exc)


def _import_openai():
    try:
        import openai
    except ImportError as err:
        raise ImportError(f"the endpoint backend needs the openai client: `{_INSTALL}`.") from err
    return openai
