"""The gate: an aligner that writes its prompt back keeps the original, in invoke and stream alike."""

from __future__ import annotations

import pytest

from metaaligner_chain.backends.base import Generation
from metaaligner_chain.gate import ECHO_REASON, ECHO_WINDOW, AlignerError, Verdict, decide, echoes_prompt, gate_stream
from metaaligner_chain.prompt import prompt_prefix

SCAFFOLD = prompt_prefix(["harmlessness", "helpfulness"])
ORIGINAL = "Keep a consistent bedtime routine and avoid screens for an hour before bed."
# What the default aligner wrote for two of the benchmark items before the gate caught it.
ECHOES = [
    "The response should avoid content that is offensive, discriminatory, or harmful; Helpfulness: "
    "The response should provide useful resources and suggestions to the user | \n\nHuman: How do I "
    "get my toddler to sleep through the night?",
    "Demonstrate your empathy and consider the context, then edit the answer to improve it "
    "considering these aspects: Length: the response should be concise and avoid redundant content.",
    "\n\nHuman: How do I get my toddler to sleep through the night? \n\nAssistant:",
]
ANSWERS = [
    ORIGINAL,
    "Keep a consistent bedtime routine. Avoid screens for an hour before bed.",
    "Harmlessness matters here: never give a toddler sleeping pills; keep a routine instead.",
]


def stream(text: str, size: int = 7):
    """A backend stream: `text` in pieces, then its Generation."""
    for start in range(0, len(text), size):
        yield text[start : start + size]
    return Generation(text, "stop", 10, len(text) // 4)


@pytest.mark.parametrize("text", ECHOES)
def test_echoes_of_the_prompt_are_caught(text):
    assert echoes_prompt(text, SCAFFOLD, ORIGINAL)


@pytest.mark.parametrize("text", ANSWERS)
def test_answers_and_copies_of_the_original_are_not_echoes(text):
    assert not echoes_prompt(text, SCAFFOLD, ORIGINAL)
    transcript = "\n\nHuman: hi \n\nAssistant: hello"  # an original that has the markers itself
    assert not echoes_prompt(transcript, SCAFFOLD, transcript)


@pytest.mark.parametrize("text", ECHOES + ANSWERS + ["  short answer.  ", "x" * (ECHO_WINDOW + 5)])
def test_stream_yields_exactly_what_decide_returns(text):
    expected = decide(ORIGINAL, Generation(text, "stop", 10, 5), strict=False, scaffold=SCAFFOLD)
    out = list(gate_stream(ORIGINAL, stream(text), strict=False, scaffold=SCAFFOLD))
    verdict = out[-1]
    assert isinstance(verdict, Verdict) and "".join(out[:-1]) == expected.text == verdict.text
    assert verdict.fallback_reason == expected.fallback_reason


def test_an_echo_stops_the_stream_and_keeps_the_original(caplog):
    consumed = []

    def endless():
        text = ECHOES[0] * 50
        for start in range(0, len(text), 5):
            consumed.append(start)
            yield text[start : start + 5]

    out = list(gate_stream(ORIGINAL, endless(), strict=False, scaffold=SCAFFOLD))
    assert out[:-1] == [ORIGINAL] and out[-1].fallback_reason == ECHO_REASON
    assert len(consumed) * 5 < 2 * ECHO_WINDOW  # generation stopped once the head was checked
    assert ECHO_REASON in caplog.text


def test_strict_raises_on_an_echo():
    with pytest.raises(AlignerError, match="prompt back"):
        decide(ORIGINAL, Generation(ECHOES[1], "stop", 10, 5), strict=True, scaffold=SCAFFOLD)
    with pytest.raises(AlignerError, match="prompt back"):
        list(gate_stream(ORIGINAL, stream(ECHOES[1]), strict=True, scaffold=SCAFFOLD))
