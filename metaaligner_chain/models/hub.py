"""Hub ids checked before transformers loads them, so a wrong id or a hub out of reach fails at once.

Left to itself, `from_pretrained` retries an unreachable hub for about 50 s per model and then
reports it in general terms. Here one request (no retries, `PROBE_TIMEOUT`) asks whether the model
exists; `HF_HUB_OFFLINE=1` is honoured (no request at all); a model in the local hub cache still
loads from it when the hub cannot be reached.
"""

from __future__ import annotations

from typing import Any

#: Seconds to wait for the hub's answer about a model id.
PROBE_TIMEOUT = 5.0
_LOCAL = "pass a local model directory or .gguf file as `model`"


def hub_load_options(model_id: str, filename: str = "config.json") -> dict[str, Any]:
    """Extra `from_pretrained` / `hf_hub_download` options for hub id `model_id`
    (`local_files_only` when only the cache can serve it; `filename` tells whether it does); an
    `OSError` that says what to do when the model cannot be had at all."""
    import huggingface_hub
    from huggingface_hub.errors import HFValidationError, HfHubHTTPError, RepositoryNotFoundError

    try:
        cached = isinstance(huggingface_hub.try_to_load_from_cache(model_id, filename), str)
    except HFValidationError as exc:
        raise OSError(
            f"`model` {model_id!r} is neither an existing path nor a hub id ('org/name'): {exc}. "
            f"Check the spelling, or {_LOCAL}."
        ) from None
    if huggingface_hub.is_offline_mode():
        if cached:
            return {}
        raise OSError(
            f"`model` {model_id!r} is a hub id, the hub is offline (HF_HUB_OFFLINE is set) and "
            f"the model is not in the local hub cache. {_LOCAL.capitalize()}, or download it "
            f"while online (`hf download {model_id}`)."
        )
    try:
        huggingface_hub.model_info(model_id, timeout=PROBE_TIMEOUT)
    except RepositoryNotFoundError:
        raise OSError(
            f"`model` {model_id!r} is not a model on the hub (or it is private: log in with "
            f"`hf auth login`). Check the spelling, or {_LOCAL}."
        ) from None
    except HfHubHTTPError:  # the hub answered, but not about the model (5xx, rate limit): let
        return {}  # transformers try as usual
    except Exception as exc:  # no connection: DNS, refused, timed out
        if cached:
            return {"local_files_only": True}
        raise OSError(
            f"`model` {model_id!r} is a hub id, but the hub cannot be reached ({exc}) and the model "
            f"is not in the local hub cache. {_LOCAL.capitalize()}, or set HF_HUB_OFFLINE=1 when "
            "working offline with cached models."
        ) from exc
    return {}
