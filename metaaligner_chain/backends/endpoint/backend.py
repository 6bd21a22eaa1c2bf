"""OpenAI-compatible server engine: the raw aligner prompt to `/v1/completions` of vLLM, TGI or
llama.cpp's server, one request per prompt, at most `max_concurrency` in flight.

The server holds the model; this side builds requests from `GenerationSettings` (greedy unless
`temperature > 0`) and reads answers and their SSE streams into `Generation`s. Talking to the
server, and the errors it can end in, is `server.py`'s. Loading asks `GET /v1/models`: the server
must be up and serve `model`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from metaaligner_chain.backends.base import Capabilities, Generation, GenerationSettings
from metaaligner_chain.backends.endpoint.server import (
    API_KEY_ENV,
    Server,
    import_openai,
    pick_model,
)

DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 2
DEFAULT_MAX_CONCURRENCY = 8
#: Sent with every request unless `extra_body` says otherwise: llama.cpp's server penalizes
#: repeats by default (1.1), which changes greedy output; the released inference does not.
#: Servers ignore fields they do not know (vLLM logs them); pass `extra_body={}` to send none.
NEUTRAL_SAMPLING = {"repeat_penalty": 1.0}


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
        import_openai()
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
        self._server = Server(
            self.base_url,
            api_key=api_key or os.environ.get(API_KEY_ENV) or "none",
            timeout=timeout,
            max_retries=max_retries,
        )
        served = self._server.models()
        self.model = pick_model(model, served, self.base_url)
        self.context_length = int(served[self.model].get("max_model_len") or 0)
        self.metadata: dict[str, Any] = {
            "base_url": self.base_url, "context_length": self.context_length,
        }

    def __repr__(self) -> str:
        return f"EndpointBackend({self.model!r}, base_url={self.base_url!r})"

    def generate(self, prompts: Sequence[str], settings: GenerationSettings,
                 responses: Sequence[str] | None = None) -> list[Generation]:
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
                raise self._server.broken(exc, len("".join(text))) from exc
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
        self._server.close()

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
        """One `/completions` request for `prompt` with `settings`."""
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
        return self._server.complete(request)
