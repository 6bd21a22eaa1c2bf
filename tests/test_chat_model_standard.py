"""langchain-tests' standard suites on `AlignedChatModel`.

Unit suite: a fake inner chat model (the suite makes no model call). Integration suite: the real
SmolLM2-135M-Instruct GGUF through langchain-community's `ChatLlamaCpp` as the inner model, and
the built-in default aligner, with short answers. Features the inner model or the wrapper lacks
are declared with the suite's own flags.
"""

from __future__ import annotations

import functools

from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from fake_chat import ToolFakeChatModel
from local_chat import local_chat_model
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
        return {
            "chat_model": ToolFakeChatModel(messages=iter(["Hi."])),
            "aligner": _default_aligner(32),
        }


class TestAlignedChatModelIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[AlignedChatModel]:
        return AlignedChatModel

    @property
    def chat_model_params(self) -> dict:
        return {"chat_model": local_chat_model(), "aligner": _default_aligner(32)}

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
