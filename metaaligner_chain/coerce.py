"""From whatever a chain produced to (context, response), and back to the type that came in.

Accepted inputs: a `str` (the response, no context); a LangChain message (string or content-block
content); a dict with the query under ``query``/``question``/``input`` (text, a message, a list of
messages or a prompt value), an optional chat history under ``chat_history``/``history``, an
optional per-call ``objectives``, and the response under ``response``/``answer``/``output`` (text
or a message); an agent's state ``{"messages": [...]}`` (the last AI message is the response, the
messages before it the context). Outputs mirror the input: str → str, message → same message type,
dict → same dict with the response replaced and the original kept under ``original_response``;
agent state → the same state with that AI message replaced (the original in its metadata). A
message's non-text content blocks (images, ...) stay where they were; only its text is aligned.
A value of the wrong type is a `TypeError` naming its field, the value and what to pass instead.
Writing the aligned text back in that shape is `render.py`'s.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    convert_to_messages,
)
from langchain_core.prompt_values import PromptValue
from typing_extensions import TypedDict

from metaaligner_chain.prompt import format_context

QUERY_KEYS = ("query", "question", "input")
HISTORY_KEYS = ("chat_history", "history")
RESPONSE_KEYS = ("response", "answer", "output")
#: Where an agent (`langchain.agents.create_agent`, LangGraph) keeps its conversation.
MESSAGES_KEY = "messages"


class AlignInput(TypedDict, total=False):
    """A dict to align: the response under one of `RESPONSE_KEYS`, the query under one of
    `QUERY_KEYS`, optional history and per-call objectives; or an agent state (`messages`)."""

    query: str | BaseMessage | list[BaseMessage]
    question: str | BaseMessage | list[BaseMessage]
    input: str | BaseMessage | list[BaseMessage]
    chat_history: list[BaseMessage]
    history: list[BaseMessage]
    response: str | BaseMessage
    answer: str | BaseMessage
    output: str | BaseMessage
    objectives: list[str]
    messages: list[BaseMessage]


#: What the aligner takes, and gives back in the same shape.
AlignerInput = str | BaseMessage | AlignInput


@dataclass(frozen=True)
class AlignRequest:
    """One item to align: the raw input, where its response lives, and what the aligner reads."""

    raw: Any
    response: str
    context: Any = ""
    response_key: str | None = None
    objectives: Any = None
    #: For an agent state: the index of the AI message to align in ``raw["messages"]``.
    message_index: int | None = None
    #: Why this item is returned untouched without a model call (e.g. its AI message calls tools).
    untouched: str | None = None
    #: Messages of a long conversation left out of the context so the prompt fits (oldest first).
    dropped_turns: int = 0
    #: For a part of a long answer after the first: the last sentence of the part before as aligned
    #: (its original text when it fell back), read in the context as the assistant's words so far.
    previous: str = ""

    @property
    def response_value(self) -> Any:
        if self.message_index is not None:
            return self.raw[MESSAGES_KEY][self.message_index]
        return self.raw[self.response_key] if self.response_key else self.raw

    @property
    def quoted(self) -> str:
        """The response as the aligner's prompt quotes it: repaired (`clean_text`) and without
        surrounding whitespace, as in training (an answer ending in blank lines before " | Edit: "
        had the default aligner go on writing "|" lines). The original stays in `response`."""
        return clean_text(self.response).strip()


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")  # in a Python str, always unpaired


def clean_text(text: str) -> str:
    """`text` as a tokenizer can take it: lone surrogates (left by some decoders) become U+FFFD,
    NUL and other control characters (tabs and line breaks kept) are dropped."""
    return _CONTROL.sub("", _SURROGATE.sub("\ufffd", text))


def _first_key(data: dict, keys: Sequence[str]) -> str | None:
    return next((k for k in keys if k in data), None)


def _shown(value: Any) -> str:
    """`value` as an error message shows it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _response_text(value: Any, field: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, BaseMessage):
        return value.text
    raise TypeError(
        f"`{field}` is a {type(value).__name__} ({_shown(value)}); the response to align must be "
        "a str or a LangChain message."
    )


def _message_list(value: Any, field: str) -> list[BaseMessage]:
    """A list of messages, or of what LangChain reads as one (``("human", "hi")``, a role dict,
    a str for a human turn); anything else is an error naming `field` and the item."""
    try:
        return convert_to_messages(value)
    except Exception:  # langchain-core raises several types; find the item and name it
        for i, item in enumerate(value):
            try:
                convert_to_messages([item])
            except Exception:
                raise TypeError(
                    f"`{field}` item {i} is {_shown(item)} ({type(item).__name__}); give LangChain "
                    "messages (HumanMessage, AIMessage, ...) or (role, text) pairs such as "
                    "('human', 'Hi')."
                ) from None
        raise


def _query(value: Any, field: str) -> Any:
    """The query as given (text, a message or a prompt value) or as a list of messages."""
    if isinstance(value, (str, BaseMessage, PromptValue)):
        return value
    if isinstance(value, (list, tuple)):
        return _message_list(value, field)
    raise TypeError(
        f"`{field}` is {_shown(value)} ({type(value).__name__}); pass the query as text, a "
        "message, a list of messages or a prompt value."
    )


def _history(value: Any, field: str) -> list[BaseMessage]:
    if not isinstance(value, (list, tuple)):
        raise TypeError(
            f"`{field}` is {_shown(value)}; give the earlier turns as a list of messages, or leave "
            f"`{field}` out."
        )
    return _message_list(value, field)


def _objectives(value: Any) -> Any:
    """Per-call objectives, checked as the constructor checks them (None: the runnable's own)."""
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise TypeError(
            f"`objectives` is {_shown(value)}; give a list such as ['harmlessness', 'length'], or leave "
            "it out to use the runnable's objectives."
        )
    if not value:
        raise ValueError(
            "`objectives` is []; name at least one objective, or leave it out to use the "
            "runnable's objectives."
        )
    return list(value)


def coerce(value: Any) -> AlignRequest:
    """Read one input; raise `TypeError`/`ValueError` naming the field and the fix."""
    if isinstance(value, (str, BaseMessage)):
        return AlignRequest(raw=value, response=_response_text(value, "input"))
    if isinstance(value, dict):
        key = _first_key(value, RESPONSE_KEYS)
        if key is None and is_agent_state(value):
            return _agent_request(value)
        if key is None and MESSAGES_KEY in value:
            raise TypeError(_not_agent_state(value[MESSAGES_KEY]))
        if key is None:
            raise ValueError(
                f"input dict has keys {sorted(value)}; put the response to align under one of "
                f"{', '.join(RESPONSE_KEYS)} (and the query under one of {', '.join(QUERY_KEYS)})."
            )
        query_key, history_key = _first_key(value, QUERY_KEYS), _first_key(value, HISTORY_KEYS)
        context: Any = _query(value[query_key], query_key) if query_key else ""
        if history_key:
            context = [*_history(value[history_key], history_key), *as_messages(context)]
        return AlignRequest(
            raw=value,
            response=_response_text(value[key], key),
            context=context,
            response_key=key,
            objectives=_objectives(value.get("objectives")),
        )
    raise TypeError(
        f"input is a {type(value).__name__}; pass a str, a LangChain message, or a dict such as "
        "{'query': ..., 'response': ...}."
    )


def is_agent_state(value: Any) -> bool:
    """Whether `value` looks like an agent's state: a dict with a list of messages."""
    return (
        isinstance(value, dict)
        and isinstance(value.get(MESSAGES_KEY), (list, tuple))
        and all(isinstance(m, BaseMessage) for m in value[MESSAGES_KEY])
    )


def _not_agent_state(messages: Any) -> str:
    """What is wrong with an agent state's `messages`, and what it should hold."""
    where = f"`{MESSAGES_KEY}` is {_shown(messages)}"
    if isinstance(messages, (list, tuple)):
        i, item = next((i, m) for i, m in enumerate(messages) if not isinstance(m, BaseMessage))
        where = f"`{MESSAGES_KEY}` item {i} is {_shown(item)} ({type(item).__name__})"
    return f"{where}; an agent state holds a list of LangChain messages, the last one the AI answer to align."


def _agent_request(state: dict) -> AlignRequest:
    """The last message of an agent state is the response when it is an AI answer; everything
    before it is the context. A last message that calls tools (or is not an AI message) is
    left untouched: it is not an answer to the user."""
    messages = list(state[MESSAGES_KEY])
    if not messages:
        raise ValueError("the agent state's `messages` is empty; there is no answer to align.")
    last = messages[-1]
    untouched = None
    if not isinstance(last, AIMessage):
        untouched = f"the last message is a {last.type} message, not an AI answer"
    elif last.tool_calls:
        untouched = "the last AI message calls tools; only final answers are aligned"
    return AlignRequest(
        raw=state, response=last.text, context=messages[:-1], message_index=len(messages) - 1,
        objectives=_objectives(state.get("objectives")), untouched=untouched,
    )


def as_messages(context: Any) -> list[BaseMessage]:
    """A query in any accepted form as a list of messages."""
    if isinstance(context, PromptValue):
        return context.to_messages()
    if isinstance(context, BaseMessage):
        return [context]
    if isinstance(context, str):
        return [HumanMessage(context)] if context else []
    if isinstance(context, (list, tuple)):
        return list(context)
    raise TypeError(
        f"the query is a {type(context).__name__}; pass text, a message, a list of messages or a "
        "prompt value."
    )


def context_text(context: Any, prompt_format: str) -> str:
    """The context string for `prompt_format` (HH-RLHF transcript form for `hh-rlhf`)."""
    if isinstance(context, str) and (prompt_format != "hh-rlhf" or context.startswith("\n\nHuman:")):
        return context
    messages = [_as_text_turn(m) for m in as_messages(context)]
    return format_context(messages, prompt_format=prompt_format) if messages else ""


def _as_text_turn(message: BaseMessage) -> BaseMessage:
    """An AI turn that called tools, written out so the aligner reads what was asked for."""
    calls = getattr(message, "tool_calls", None)
    if not calls:
        return message
    called = "; ".join(f"{c['name']}({json.dumps(c['args'], ensure_ascii=False)})" for c in calls)
    return AIMessage(" ".join(filter(None, [message.text.strip(), f"[called {called}]"])))


def join_chunks(chunks: Sequence[Any]) -> Any:
    """Concatenate streamed input chunks (str, message chunks or dicts of them) into one input."""
    if not chunks:
        raise ValueError("the upstream stream produced nothing to align.")
    if all(is_agent_state(c) for c in chunks):  # an agent streams whole states: the last is final
        return chunks[-1]
    if any(isinstance(c, dict) and c and all(map(is_agent_state, c.values())) for c in chunks):
        raise ValueError(
            "the upstream agent streamed per-node updates, which do not hold the whole "
            "conversation. Stream `aligner.wrap(agent)` instead of `agent | aligner`, or align "
            "inside the agent with MetaAlignerMiddleware."
        )
    total = chunks[0]
    for chunk in chunks[1:]:
        if isinstance(total, dict) and isinstance(chunk, dict):
            total = _merge_dict_chunks(total, chunk)
        else:
            total = total + chunk
    return total


def _merge_dict_chunks(left: dict, right: dict) -> dict:
    merged = dict(left)
    for key, value in right.items():
        merged[key] = merged[key] + value if key in merged and merged[key] is not None else value
    return merged

