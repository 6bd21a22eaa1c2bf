"""Test helper: the real local chat model, SmolLM2-135M-Instruct (GGUF) through
langchain-community's `ChatLlamaCpp`, loaded once per process."""

from __future__ import annotations

import atexit
import functools
import threading

_LOCK = threading.RLock()  # ChatLlamaCpp._generate may call its own _stream


@functools.cache
def local_chat_model(max_tokens: int = 24):
    """Greedy, short answers, one call at a time: llama.cpp's `Llama` is not thread-safe and
    batch calls run in threads."""
    from langchain_community.chat_models import ChatLlamaCpp

    from metaaligner_chain.models.defaults import default_gguf_path

    class OneAtATime(ChatLlamaCpp):
        def _generate(self, *args, **kwargs):
            with _LOCK:
                return super()._generate(*args, **kwargs)

        def _stream(self, *args, **kwargs):
            with _LOCK:
                yield from super()._stream(*args, **kwargs)

    model = OneAtATime(
        model_path=str(default_gguf_path()),
        temperature=0.0,
        max_tokens=max_tokens,
        n_ctx=1024,
        n_threads=2,
        rope_freq_base=0,  # keep the GGUF's own RoPE base
        verbose=False,
    )
    atexit.register(model.client.close)  # before interpreter teardown, which breaks Llama.__del__
    return model
