"""Splitting a long answer into parts the aligner can take, and joining the rewrites back."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from metaaligner_chain.chunking import join_parts, separators, split_text, trim_turns


def words(text: str) -> int:
    return len(text.split())


PARAGRAPHS = "\n\n".join(
    " ".join(f"Sentence {p}.{s} has a few words in it." for s in range(6)) for p in range(5)
)


def test_parts_follow_paragraphs_then_sentences_and_join_back_exactly():
    parts = split_text(PARAGRAPHS, 50, words)
    assert "".join(parts) == PARAGRAPHS
    assert all(words(p) <= 50 for p in parts)
    assert len(parts) == 5 and all(p.rstrip().endswith("in it.") for p in parts)  # one paragraph each
    small = split_text(PARAGRAPHS, 20, words)
    assert "".join(small) == PARAGRAPHS and all(words(p) <= 20 for p in small)
    assert all(p.rstrip().endswith(".") for p in small)  # cut between sentences, not inside one


def test_a_text_without_breaks_is_cut_between_words_and_a_huge_word_by_characters():
    text = " ".join(["word"] * 50)
    parts = split_text(text, 8, words)
    assert "".join(parts) == text and all(words(p) <= 8 for p in parts)
    blob = "x" * 1000
    parts = split_text(blob, 10, lambda t: len(t) // 4 + 1)
    assert "".join(parts) == blob and len(parts) > 1


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=400), st.integers(min_value=1, max_value=40))
def test_any_text_splits_into_parts_that_join_back(text, limit):
    parts = split_text(text, limit, lambda t: len(t) // 3 + 1)
    assert "".join(parts) == text and all(parts)


def test_rewritten_parts_are_joined_with_the_original_separators():
    original = "First part.\n\nSecond part. Third.\n"
    bodies = ["First part.", "Second part.", "Third."]
    assert separators(original, bodies) == ["\n\n", " ", "\n"]
    assert join_parts(original, bodies, [" One. ", "Two.\n", "Three"]) == "One.\n\nTwo. Three\n"
    assert join_parts(original, bodies, bodies) == original


def test_a_long_conversation_loses_its_oldest_turns_never_the_latest_question():
    system = SystemMessage("Answer briefly.")
    turns = [m for i in range(6) for m in (HumanMessage(f"question {i} " + "word " * 8),
                                           AIMessage(f"answer {i} " + "word " * 8))]
    latest = HumanMessage("the latest question " + "word " * 8)
    messages = [system, *turns, latest]

    def size(kept):
        return sum(words(m.text) for m in kept)

    assert trim_turns(messages, size, size(messages)) == messages  # it fits: nothing dropped
    kept = trim_turns(messages, size, 45)
    assert size(kept) <= 45 and kept[0] == system and kept[-1] == latest
    assert kept[1].type == "human" and kept[1:] == messages[-(len(kept) - 1):]  # the newest turns
    assert kept == [system, turns[-2], turns[-1], latest]
    assert trim_turns(messages, size, 3) == [system, latest]  # over budget alone: still kept
    tool_turn = [*messages, AIMessage("calling a tool")]  # what follows the latest question stays
    assert trim_turns(tool_turn, size, 3) == [system, latest, tool_turn[-1]]
