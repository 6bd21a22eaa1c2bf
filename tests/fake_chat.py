"""Test helper: `GenericFakeChatModel` as an agent's or `AlignedChatModel`'s inner model.

GenericFakeChatModel has no `bind_tools` (create_agent calls it when given tools), its
`with_structured_output` refuses `method=`/`strict=`, and its stream drops tool calls.
"""

from __future__ import annotations

import json

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessageChunk
from langchain_core.outputs import ChatGenerationChunk


class ToolFakeChatModel(GenericFakeChatModel):
    """Answers the given messages in turn, tool calls included (streamed as one chunk)."""

    def bind_tools(self, tools, **kwargs):
        return self

    def with_structured_output(
        self, schema, *, include_raw=False, method=None, strict=None, **kwargs
    ):
        return super().with_structured_output(schema, include_raw=include_raw)

    def _stream(self, messages, stop=None, run_manager=None, **kwargs):
        message = next(self.messages)
        if not getattr(message, "tool_calls", None):
            self.messages = iter([message, *self.messages])
            yield from super()._stream(messages, stop, run_manager, **kwargs)
            return
        chunks = [
            {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
            for i, c in enumerate(message.tool_calls)
        ]
        yield ChatGenerationChunk(
            message=AIMessageChunk(content="", tool_call_chunks=chunks, chunk_position="last")
        )
