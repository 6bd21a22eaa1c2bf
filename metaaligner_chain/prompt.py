"""Prompt formats: the exact strings the released MetaAligner checkpoints read, shared with `trainer/`.

`build_prompt(query, response, objectives, prompt_format=..., mode=...)` is character-exact with
the released inference code (each template ends with one space after ``Edit:``); training data
built by `trainer/` goes through the same function, so a model is served with the form it learned.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from metaaligner_chain.objectives import Objective, check_prompt_format, resolve

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage

MODES = ("better", "equal")

_TEMPLATES: dict[str, str] = {
    "hh-rlhf": (
        "You are an assistant to human. You will be provided with a context and an answer. "
        "Consider the context, then edit the answer to {goal} considering these aspects: "
        "{aspects} | Context: {question} | Answer: {answer} | Edit: "
    ),
    "ultrafeedback": (
        "You are an assistant to human. You will be provided with a query and an answer. "
        "Consider the query, then edit the answer to {goal} considering these aspects: "
        "{aspects} | Query: {question} | Answer: {answer} | Edit: "
    ),
    "imhi": (
        'Edit the following Question-Answer pair to {goal} considering these aspects '
        '"{aspects}" | Question: {question} | Answer: {answer} | Edit: '
    ),
}

#: The field labels every template puts between its parts ("| Context:", "| Answer:", ...) and the
#: turn labels of the hh-rlhf transcript: scaffolding that an answer never starts with.
PROMPT_MARKERS: tuple[str, ...] = tuple(
    dict.fromkeys(
        literal[literal.rindex("|") :].strip()
        for template in _TEMPLATES.values()
        for literal, *_ in string.Formatter().parse(template)
        if "|" in literal
    )
) + ("Human:", "Assistant:")

#: A field label as written inside user text ("| Edit:", "|answer :"); its bar becomes a broken bar.
_FIELD = re.compile(r"\|(?=[ \t]*(?:Context|Query|Question|Answer|Edit)[ \t]*:)", re.IGNORECASE)
#: A transcript turn ("\n\nHuman:") inside user text; its blank line becomes a single line break.
_TURN = re.compile(r"\n[ \t]*\n\s*(?=(?:Human|Assistant)[ \t]*:)", re.IGNORECASE)
#: The template's instruction phrase, which introduces the objectives block.
_INSTRUCTION = re.compile(r"considering these aspects(?=[ \t]*[:\"])", re.IGNORECASE)
BROKEN_BAR = "\u00a6"


def neutralize(text: str, *, turns: bool = True) -> str:
    """User text with the template's structure taken out: a field label's bar becomes a broken
    bar ("¦ Edit:"), the instruction phrase is reworded, and (with `turns`) a transcript turn's
    blank line becomes one line break. It still reads as the same plain text, but it can no
    longer open a field, an objectives block or a turn of the prompt it is put into."""
    text = _FIELD.sub(BROKEN_BAR, text)
    text = _INSTRUCTION.sub("considering the aspects", text)
    return _TURN.sub("\n", text) if turns else text


# What the template asks for, per prompt format and mode.
_GOALS: dict[str, dict[str, str]] = {
    "hh-rlhf": {"better": "improve it", "equal": "make it equal"},
    "ultrafeedback": {"better": "improve it", "equal": "make it equal"},
    "imhi": {"better": "make it better", "equal": "make it equal"},
}


def build_prompt(
    query: str,
    response: str,
    objectives: str | Objective | Iterable[str | Objective],
    *,
    prompt_format: str = "hh-rlhf",
    mode: str = "better",
) -> str:
    """The aligner's input T(query, response, objectives, mode) for `prompt_format`.

    Objective keys resolve within `prompt_format`; descriptions are joined with ``'; '`` in the
    order given. Template markers inside the query or the response are neutralized
    (`neutralize`): whatever they hold, the prompt has one instruction, one objectives block and
    one answer slot. The query keeps its transcript turns (it is the context `format_context`
    writes, whose messages are neutralized there).
    """
    check_prompt_format(prompt_format)
    if mode not in MODES:
        raise ValueError(f"`mode` is {mode!r}; choose 'better' or 'equal'.")
    aspects = "; ".join(o.description for o in resolve(objectives, prompt_format))
    return _TEMPLATES[prompt_format].format(
        goal=_GOALS[prompt_format][mode],
        aspects=aspects,
        question=neutralize(query, turns=False),
        answer=neutralize(str(response)),
    )


def prompt_prefix(objectives: Any, *, prompt_format: str = "hh-rlhf", mode: str = "better") -> str:
    """The part of the prompt that depends only on the objectives (shared across calls)."""
    marker = "\x00"
    return build_prompt(marker, "", objectives, prompt_format=prompt_format, mode=mode).split(
        marker
    )[0]


def _role(message: BaseMessage) -> str:
    kind = message.type
    if kind in ("human", "user"):
        return "Human"
    if kind in ("ai", "assistant", "AIMessageChunk"):
        return "Assistant"
    return kind.capitalize() or "Human"


def format_context(messages: Sequence[BaseMessage], *, prompt_format: str = "hh-rlhf") -> str:
    """The context text a prompt format expects, from a chat history of LangChain messages.

    The history is everything *before* the response being aligned. For ``hh-rlhf`` this is the
    Anthropic transcript form ``"\\n\\nHuman: ... \\n\\nAssistant:"`` the checkpoints were trained
    on (a system message goes first, before the first turn, as in Anthropic's legacy prompt
    format). Other formats take the text of a single user turn, or a ``Human:``/``Assistant:``
    transcript when the history has several turns.
    """
    check_prompt_format(prompt_format)
    system = [neutralize(m.text) for m in messages if m.type == "system"]
    turns = [(_role(m), neutralize(m.text.strip())) for m in messages if m.type != "system"]
    if prompt_format == "hh-rlhf":
        transcript = "".join(f"\n\n{role}: {text}" for role, text in turns)
        return "\n".join(system) + transcript + " \n\nAssistant:"
    if len(turns) == 1:
        return "\n".join([*system, turns[0][1]])
    return "\n".join([*system, *(f"{role}: {text}" for role, text in turns)])


def continue_context(context: str, previous: str, *, prompt_format: str = "hh-rlhf") -> str:
    """`context` (as `format_context` writes it) followed by `previous`, what the assistant said
    just before the answer being aligned (the last sentence of a long answer's part before), as an
    assistant turn: for ``hh-rlhf`` the transcript still ends in ``"\n\nAssistant:"``, the same
    string `format_context` makes of the messages with an `AIMessage(previous)` added."""
    previous = neutralize(previous.strip())
    if not previous:
        return context
    if prompt_format == "hh-rlhf":
        head = context.removesuffix(" \n\nAssistant:") if context.endswith(" \n\nAssistant:") else context
        return f"{head}\n\nAssistant: {previous} \n\nAssistant:"
    return "\n".join(filter(None, [context, f"Assistant: {previous}"]))
