"""The gate: an aligner that writes its prompt back keeps the original, in invoke and stream alike."""

from __future__ import annotations

import pytest

from metaaligner_chain.backends.base import Generation
from metaaligner_chain.gate import (
    ECHO_REASON,
    ECHO_WINDOW,
    AlignerError,
    Verdict,
    decide,
    echoes_prompt,
    gate_stream,
    until_template,
    watch,
)
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


def endless(text: str, consumed: list[int]):
    """A backend stream that would go on for a long time: `text` 50 times, 5 characters a piece."""
    text = text * 50
    for start in range(0, len(text), 5):
        consumed.append(start)
        yield text[start : start + 5]


def test_an_echo_stops_the_stream_and_keeps_the_original(caplog):
    consumed = []
    out = list(gate_stream(ORIGINAL, endless(ECHOES[0], consumed), strict=False, scaffold=SCAFFOLD))
    assert out[:-1] == [ORIGINAL] and out[-1].fallback_reason == ECHO_REASON
    assert len(consumed) * 5 < 2 * ECHO_WINDOW  # generation stopped once the head was checked
    assert ECHO_REASON in caplog.text


def test_strict_raises_on_an_echo():
    with pytest.raises(AlignerError, match="prompt back"):
        decide(ORIGINAL, Generation(ECHOES[1], "stop", 10, 5), strict=True, scaffold=SCAFFOLD)
    with pytest.raises(AlignerError, match="prompt back"):
        list(gate_stream(ORIGINAL, stream(ECHOES[1]), strict=True, scaffold=SCAFFOLD))


@pytest.mark.parametrize("text", ECHOES + ANSWERS + ["  short answer.  ", "x" * (ECHO_WINDOW + 5)])
def test_a_watched_generation_gets_the_verdict_of_the_whole_one(text):
    whole = Generation(text, "stop", 10, len(text) // 4)
    watched = watch(stream(text), original=ORIGINAL, scaffold=SCAFFOLD)
    if not echoes_prompt(text.strip(), SCAFFOLD, ORIGINAL):
        assert watched == whole  # the backend's own Generation, counts and all
    expected = decide(ORIGINAL, whole, strict=False, scaffold=SCAFFOLD)
    assert decide(ORIGINAL, watched, strict=False, scaffold=SCAFFOLD) == expected


def test_watching_stops_an_echo_early_and_lets_an_answer_run():
    consumed: list[int] = []
    watched = watch(endless(ECHOES[0], consumed), original=ORIGINAL, scaffold=SCAFFOLD)
    assert watched.finish_reason == "echo" and len(consumed) * 5 < 2 * ECHO_WINDOW
    assert decide(ORIGINAL, watched, strict=False, scaffold=SCAFFOLD).fallback_reason == ECHO_REASON
    consumed.clear()
    watch(endless(ANSWERS[2], consumed), original=ORIGINAL, scaffold=SCAFFOLD)
    assert len(consumed) * 5 >= 50 * len(ANSWERS[2])  # read to the end


def test_a_failing_stream_is_returned_for_the_gate_to_judge():
    def broken():
        yield "Keep a routine"
        raise RuntimeError("out of memory")

    failure = watch(broken(), original=ORIGINAL, scaffold=SCAFFOLD)
    assert isinstance(failure, RuntimeError)
    assert decide(ORIGINAL, failure, strict=False).text == ORIGINAL
    with pytest.raises(AlignerError, match="out of memory"):
        decide(ORIGINAL, failure, strict=True)


def test_a_second_round_of_the_template_is_cut_off_alike_in_every_path():
    answer = "Water it weekly, keep it in bright light and feed it once a month in spring and summer."
    looping = f"{answer} | Edit: {answer} | Edit: {answer}"
    verdict = decide(ORIGINAL, Generation(looping, "length", 10, 30), strict=False, scaffold=SCAFFOLD)
    assert verdict.aligned and verdict.text == answer

    def pieces():
        for i in range(0, len(looping), 5):  # the marker arrives split over pieces
            yield looping[i : i + 5]
        return Generation(looping, "length", 10, 30)

    streamed = [p for p in gate_stream(ORIGINAL, until_template(pieces(), ORIGINAL), strict=False,
                                       scaffold=SCAFFOLD) if isinstance(p, str)]
    assert "".join(streamed) == answer
    watched = watch(until_template(pieces(), ORIGINAL), original=ORIGINAL, scaffold=SCAFFOLD)
    assert decide(ORIGINAL, watched, strict=False, scaffold=SCAFFOLD).text == answer
    kept = "Tip: write | Edit: in the margin."  # a marker the original itself holds is not cut
    assert decide(kept, Generation(kept, "stop", 1, 1), strict=False).text == kept
