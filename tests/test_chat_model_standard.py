"""langchain-tests' standard suites on `AlignedChatModel`.

Unit suite: a fake inner chat model (the suite makes no model call). Integration suite: the real
SmolLM2-135M-Instruct GGUF through langchain-community's `ChatLlamaCpp` as the inner model, and
the built-in default aligner, with short answers. Features the inner model or the wrapper lacks
are declared with the suite's own flags.
"""

from __future__ import annotations

import functools
import threading

from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from fake_chat import ToolFakeChatModel
from metaaligner_chain import AlignedChatModel, MetaAlignerRunnable

OBJECTIVES = ["harmlessness", "helpfulness"]


@functools.cache
def _default_aligner(max_new_tokens: int) -> MetaAlignerRunnable:
    return MetaAlignerRunnable(objectives=OBJECTIVES, max_new_tokens=max_new_tokens)


class TestAlignedChatModelUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[AlignedChatModel]:
        return AlignedChatModel

    @property
    def chat_model_params(self) -> dict:
        return {"chat_model": ToolFakeChatModel(messages=iter(["Hi."])), "aligner": _default_aligner(32)}


@functools.cache
def _local_chat_model():
    """SmolLM2 through ChatLlamaCpp, one call at a time: llama.cpp's `Llama` is not thread-safe
    and the suite's batch tests call the model from several threads."""
    from langchain_community.chat_models import ChatLlamaCpp

    from metaaligner_chain.models.defaults import default_gguf_path

    class OneAtATime(ChatLlamaCpp):
        def _generate(self, *args, **kwargs):
            with _LOCK:
                return super()._generate(*args, **kwargs)

        def _stream(self, *args, **kwargs):
            with _LOCK:
                yield from super()._stream(*args, **kwargs)

    return OneAtATime(
        model_path=str(default_gguf_path()), temperature=0.0, max_tokens=24, n_ctx=1024,
        n_threads=2, rope_freq_base=0, verbose=False,  # keep the GGUF's own RoPE base
    )


_LOCK = threading.RLock()  # ChatLlamaCpp._generate may call its own _stream


class TestAlignedChatModelIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[AlignedChatModel]:
        return AlignedChatModel

    @property
    def chat_model_params(self) -> dict:
        return {"chat_model": _local_chat_model(), "aligner": _default_aligner(32)}

    @property
    def has_tool_calling(self) -> bool:
        return False  # bind_tools passes through, but SmolLM2-135M does not call tools reliably

    @property
    def has_structured_output(self) -> bool:
        return False  # passed through unaligned; SmolLM2-135M does not fill schemas reliably

    @property
    def returns_usage_metadata(self) -> bool:
        return False  # AlignedChatModel passes on the inner model's; ChatLlamaCpp reports none

    @property
    def supports_model_override(self) -> bool:
        return False  # the inner chat model is fixed at construction
