"""The aligned text written back in the shape of the input that came in (`coerce` reads it).

str → str; a message → the same message type with its text replaced and `metaaligner` metadata,
its non-text content blocks (images, ...) kept in their places; a dict → the same dict with the
response replaced and the original under ``original_response``; an agent state → the same state
with its last AI message replaced. `render_chunk` and `head_chunk` do the same piece by piece for
streams (added up, the pieces give what `render` gives, blocks after the text).
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessageChunk, BaseMessage, BaseMessageChunk
from langchain_core.runnables.utils import AddableDict

from metaaligner_chain.coerce import MESSAGES_KEY, AlignRequest


def _with_text(message: BaseMessage, text: str, info: dict[str, Any]) -> BaseMessage:
    metadata = {**message.response_metadata, "metaaligner": info}
    content = _replace_text(message.content, text)
    return message.model_copy(update={"content": content, "response_metadata": metadata})


def _is_text(block: Any) -> bool:
    """Whether a content block is text, as `BaseMessage.text` reads it."""
    return isinstance(block, str) or (block.get("type") == "text" and isinstance(block.get("text"), str))


def _replace_text(content: str | list, text: str) -> str | list:
    """`content` with its text replaced by `text`: a str, or, when it holds other blocks (images,
    ...), the same blocks in the same places with `text` in the first text block's place."""
    if isinstance(content, str) or all(map(_is_text, content)):
        return text
    texts = [block if isinstance(block, str) else block["text"] for block in content if _is_text(block)]
    if text == "".join(texts):  # nothing to align, or the original kept: the content as it came
        return list(content)
    first = next((i for i, block in enumerate(content) if _is_text(block)), 0)
    kept = [block for block in content if not _is_text(block)]
    before = sum(not _is_text(block) for block in content[:first])
    return [*kept[:before], {"type": "text", "text": text}, *kept[before:]]


def _other_blocks(message: BaseMessage) -> list:
    """A message's non-text content blocks (images, ...), in order."""
    content = message.content
    return [] if isinstance(content, str) else [b for b in content if not _is_text(b)]


def render(request: AlignRequest, text: str, info: dict[str, Any]) -> Any:
    """The output for `request`: `text` in the shape of the input that came in."""
    value = request.response_value
    out = _with_text(value, text, info) if isinstance(value, BaseMessage) else text
    if request.message_index is not None:
        messages = list(request.raw[MESSAGES_KEY])
        messages[request.message_index] = out
        return {**request.raw, MESSAGES_KEY: messages}
    if request.response_key is None:
        return out
    return {**request.raw, request.response_key: out, "original_response": value}


def render_chunk(request: AlignRequest, piece: str, info: dict[str, Any] | None = None) -> Any:
    """One streamed piece in the shape of the input; `info` rides on the last piece, and so do a
    message's non-text blocks (images, ...): added up, the stream's message has them after its
    text (`render` keeps them in their places)."""
    value = request.response_value
    if isinstance(value, BaseMessage):
        chunk_type = type(value) if isinstance(value, BaseMessageChunk) else _chunk_type(value)
        metadata = {"metaaligner": info} if info is not None else {}
        blocks = _other_blocks(value) if info is not None else []
        content: Any = [piece, *blocks] if blocks and piece else blocks or piece
        out: Any = chunk_type(content=content, response_metadata=metadata, id=value.id)
    else:
        out = piece
    return out if request.response_key is None else AddableDict({request.response_key: out})


def head_chunk(request: AlignRequest) -> AddableDict:
    """The first streamed chunk for a dict input: its other keys and the original response."""
    rest = {k: v for k, v in request.raw.items() if k != request.response_key}
    return AddableDict({**rest, "original_response": request.response_value})


def _chunk_type(message: BaseMessage) -> type[BaseMessageChunk]:
    from langchain_core.messages import (
        ChatMessageChunk,
        HumanMessageChunk,
        SystemMessageChunk,
        ToolMessageChunk,
    )

    kinds = {"ai": AIMessageChunk, "human": HumanMessageChunk, "system": SystemMessageChunk,
             "tool": ToolMessageChunk, "chat": ChatMessageChunk}
    return kinds.get(message.type, AIMessageChunk)
