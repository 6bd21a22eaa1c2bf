"""The aligned answer as a chat model's output: one message, or stream chunks, cut before the stop
sequences and carrying the aligner's metadata; an untouched answer (tool calls) as one closing
chunk.
"""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk

class Chunks:
    """The aligner's streamed dict chunks → chat chunks: text pieces cut before any stop
    sequence, then one last chunk with the inner model's usage and the metadata."""

    def __init__(self, answer: BaseMessage, stop: list[str] | None, model_name: str):
        self.answer, self.stop, self.model_name = answer, stop or [], model_name
        self.hold = max(map(len, self.stop), default=1) - 1  # a stop sequence may arrive split
        self.text, self.sent, self.stopped, self.info = "", 0, False, {}

    def feed(self, chunk: Any) -> list[ChatGenerationChunk]:
        message = chunk.get("response") if isinstance(chunk, dict) else None
        if message is None:
            return []
        self.info = message.response_metadata.get("metaaligner", self.info)
        if self.stopped:
            return []
        self.text += message.text
        cut = _stop_at(self.text, self.stop, max(0, self.sent - self.hold))
        if cut >= 0:
            self.stopped = True
            return self._emit(cut)
        return self._emit(len(self.text) - self.hold)

    def close(self, *, untouched: bool = False) -> list[ChatGenerationChunk]:
        """The rest of the text and the closing chunk; `untouched`: the inner model's answer
        (tool calls) as one closing chunk, no aligned text fed."""
        if untouched:
            return [ChatGenerationChunk(message=as_last_chunk(self.answer))]
        out = [] if self.stopped else self._emit(len(self.text))
        last = AIMessageChunk(
            content="",
            id=self.answer.id,
            chunk_position="last",
            response_metadata=with_metadata(self.answer, self.info, self.model_name),
            usage_metadata=getattr(self.answer, "usage_metadata", None),
        )
        return [*out, ChatGenerationChunk(message=last)]

    def _emit(self, end: int) -> list[ChatGenerationChunk]:
        if end <= self.sent:
            return []
        piece, self.sent = self.text[self.sent : end], end
        return [ChatGenerationChunk(message=AIMessageChunk(content=piece, id=self.answer.id))]


def with_metadata(answer: BaseMessage, info: dict[str, Any], model_name: str) -> dict[str, Any]:
    metadata = {**answer.response_metadata, "metaaligner": info}
    metadata.setdefault("model_name", model_name)
    return metadata


def _stop_at(text: str, stop: list[str], start: int = 0) -> int:
    found = [i for s in stop if s and (i := text.find(s, start)) >= 0]
    return min(found) if found else -1


def before_stop(text: str, stop: list[str] | None) -> str:
    cut = _stop_at(text, stop or [])
    return text if cut < 0 else text[:cut]


def as_last_chunk(message: BaseMessage) -> AIMessageChunk:
    """An untouched answer (tool calls) as one closing chunk that adds up to the same message."""
    calls = getattr(message, "tool_calls", []) or []
    return AIMessageChunk(
        content=message.content,
        id=message.id,
        chunk_position="last",
        additional_kwargs=message.additional_kwargs,
        response_metadata=message.response_metadata,
        usage_metadata=getattr(message, "usage_metadata", None),
        tool_call_chunks=[
            {"name": c["name"], "args": json.dumps(c["args"]), "id": c.get("id"), "index": i}
            for i, c in enumerate(calls)
        ],
    )
