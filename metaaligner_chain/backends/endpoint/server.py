"""One OpenAI-compatible server as the endpoint engine talks to it: `GET /models` and
`/completions` through the `openai` client (timeouts, retries with backoff on connection errors,
429 and 5xx), and everything that goes wrong turned into an error that names the field, the value
and the fix.
"""

from __future__ import annotations

import re
from typing import Any

from metaaligner_chain.backends.base import PromptTooLongError

#: Where `api_key` is read from when not given; servers started without a key need none.
API_KEY_ENV = "METAALIGNER_API_KEY"
_INSTALL = 'pip install "metaaligner-chain[endpoint]"'
_SERVE = ("`vllm serve MetaAligner/MetaAligner-HH-RLHF-1.1B` or "
          "`python -m llama_cpp.server --model aligner.gguf`")


class Server:
    """The server at `base_url` (its OpenAI API root); safe to share between threads."""

    def __init__(self, base_url: str, *, api_key: str, timeout: float, max_retries: int):
        import openai  # checked by `import_openai` when the backend is made

        self.base_url = base_url
        self._client = openai.OpenAI(
            base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries
        )

    def models(self) -> dict[str, dict[str, Any]]:
        """The served models by name, each as `GET /models` describes it."""
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

    def complete(self, request: dict[str, Any]) -> Any:
        """One `/completions` request (`request` as the client's keywords); a prompt that fits but
        leaves less room than `max_tokens` is sent again once with the room left, as the
        in-process engines cap it."""
        import openai

        model = request["model"]
        for attempt in range(2):
            try:
                return self._client.completions.create(**request)
            except openai.APIConnectionError as exc:  # timeouts included, after the retries
                raise self._unreachable(exc) from exc
            except openai.NotFoundError as exc:
                raise ValueError(
                    f"the server at `base_url` {self.base_url!r} has no model `model` "
                    f"{model!r} ({_message(exc)}). Pass the name `GET {self.base_url}/models` "
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
                    request = {**request, "max_tokens": context - used}
                    continue
                error = PromptTooLongError(used or 0, context, model)
                error.args = (f"{error.args[0]} (server: {_message(exc)})",)
                raise error from exc
            except openai.APIStatusError as exc:  # 5xx after the retries, 401, 403, ...
                raise RuntimeError(
                    f"the server at `base_url` {self.base_url!r} answered HTTP "
                    f"{exc.status_code}: {_message(exc)}. Check the server's log"
                    + (", and `api_key`." if exc.status_code in (401, 403) else ".")
                ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def broken(self, exc: Exception, sent: int) -> ConnectionError:
        """The error for a stream that broke off after `sent` characters."""
        return ConnectionError(
            f"the aligner server at `base_url` {self.base_url!r} broke off its answer after "
            f"{sent} characters ({type(exc).__name__}: {exc}). Check that it is still running."
        )

    def close(self) -> None:
        self._client.close()

    def _unreachable(self, exc: Exception) -> ConnectionError:
        return ConnectionError(
            f"cannot reach the aligner server at `base_url` {self.base_url!r} "
            f"({type(exc).__name__}: {exc}). Start it ({_SERVE}) or fix `base_url`; a slow "
            "server may need a larger `timeout`."
        )


def pick_model(model: str | None, served: dict[str, dict[str, Any]], base_url: str) -> str:
    """`model` checked against the served names; `None` takes the only one."""
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


def import_openai():
    """The `openai` client module, or an `ImportError` naming the extra to install."""
    try:
        import openai
    except ImportError as err:
        raise ImportError(f"the endpoint backend needs the openai client: `{_INSTALL}`.") from err
    return openai
