"""Copy-aware drafting on plain token lists."""

from metaaligner_chain.drafting import CopyDrafter

SOURCE = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]


def test_first_draft_copies_the_start():
    assert CopyDrafter(SOURCE, start_draft=4).propose([]) == [10, 11, 12, 13]


def test_copies_ahead_from_where_the_generation_is():
    drafter = CopyDrafter(SOURCE, start_draft=3)
    assert drafter.propose([10, 11, 12]) == [13, 14, 15]


def test_resynchronizes_after_an_inserted_edit():
    drafter = CopyDrafter(SOURCE, start_draft=3)
    drafter.propose([10, 11])
    assert drafter.propose([10, 11, 99, 98]) == []  # inside the edit: nothing to copy
    assert drafter.propose([10, 11, 99, 98, 12]) == [13, 14, 15]  # back on the source


def test_resynchronizes_after_a_deletion():
    drafter = CopyDrafter(SOURCE, start_draft=2)
    drafter.propose([10, 11])
    assert drafter.propose([10, 11, 15, 16]) == [17, 18]


def test_prefers_the_occurrence_after_the_cursor():
    source = [1, 2, 3, 7, 1, 2, 3, 8]
    drafter = CopyDrafter(source, start_draft=1, min_draft=1)
    drafter.cursor = 4
    assert drafter.propose([5, 1, 2, 3]) == [8]
    drafter.cursor = 0
    assert drafter.propose([5, 1, 2, 3]) == [7]


def test_single_token_match_only_near_the_cursor():
    source = [5] + list(range(20, 40)) + [6, 7]
    drafter = CopyDrafter(source, window=4, start_draft=2)
    assert drafter.propose([6]) == []  # far from the cursor: too weak
    drafter.cursor = 19
    assert drafter.propose([6]) == [7]


def test_draft_length_adapts_to_acceptance():
    drafter = CopyDrafter(SOURCE, start_draft=2, min_draft=2, max_draft=12)
    drafter.update(2, 2)
    assert drafter.k == 4  # doubles: a copied run reaches long drafts in a few steps
    drafter.update(4, 4)
    drafter.update(8, 8)
    assert drafter.k == 12
    drafter.update(12, 1)
    assert drafter.k == 2


def test_end_of_source_gives_a_short_or_empty_draft():
    drafter = CopyDrafter(SOURCE, start_draft=4)
    assert drafter.propose(SOURCE[:8]) == [18, 19]
    assert drafter.propose(SOURCE) == []


def test_pauses_longer_after_each_wholly_rejected_draft():
    drafter = CopyDrafter(SOURCE, start_draft=2, max_pause=3)
    drafter.update(2, 0)
    assert drafter.propose(SOURCE[:2]) == []  # paused for one call
    assert drafter.propose(SOURCE[:2]) == [12, 13]
    drafter.update(2, 0)
    assert [drafter.propose(SOURCE[:2]) for _ in range(3)] == [[], [], [12, 13]]
    drafter.update(2, 0)  # third miss: 4 calls, capped at max_pause=3
    assert [drafter.propose(SOURCE[:2]) for _ in range(4)] == [[], [], [], [12, 13]]
    drafter.update(2, 1)  # an accepted token ends the streak
    drafter.update(2, 0)
    assert drafter.propose(SOURCE[:2]) == []
    assert drafter.propose(SOURCE[:2]) == [12, 13]


def test_off_the_response_it_looks_up_the_prompt_like_stock_prompt_lookup():
    prompt = [1, 2, 50, 51, 52, 53, 3, *SOURCE, 4]
    drafter = CopyDrafter(SOURCE, context=prompt, start_draft=3)
    assert drafter.propose([99, 50, 51]) == [52, 53, 3]  # not in the response, in the instruction
    assert CopyDrafter(SOURCE, start_draft=3).propose([99, 50, 51]) == []  # no context: no fallback


def test_a_repeated_phrase_is_drafted_from_the_generation_itself():
    drafter = CopyDrafter(SOURCE, context=[1, 2, 3], start_draft=4)
    generated = [70, 71, 72, 73, 74, 70, 71]
    assert drafter.propose(generated) == [72, 73, 74, 70]


def test_the_response_is_preferred_over_the_lookup():
    prompt = [12, 13, 77, 78, *SOURCE]
    drafter = CopyDrafter(SOURCE, context=prompt, start_draft=2)
    assert drafter.propose([10, 11, 12, 13]) == [14, 15]


def test_a_lookup_at_the_prompt_end_continues_into_the_generation():
    drafter = CopyDrafter(SOURCE, context=[5, 80, 81], start_draft=4)
    assert drafter.propose([80, 81]) == [80, 81]  # prompt + generation: 5 80 81 | 80 81


def test_lookup_drafts_are_capped_and_flagged_as_not_copied():
    drafter = CopyDrafter(SOURCE, context=[50, 51, *range(60, 80)], start_draft=16, max_lookup=5)
    assert drafter.propose([99, 50, 51]) == [60, 61, 62, 63, 64]
    assert drafter.copying is False
    assert len(drafter.propose([10, 11])) == 8  # copied from the response: the full draft length
    assert drafter.copying is True


def test_fixed_lookups_keep_their_length_and_leave_the_copy_pauses_alone():
    drafter = CopyDrafter(SOURCE, context=[50, 51, *range(60, 80)], start_draft=2,
                          max_lookup=6, fixed_lookup=True)
    drafter.propose([10, 11])
    drafter.update(2, 0)  # a copied draft missed: copying pauses
    assert drafter.propose([99, 50, 51]) == [60, 61, 62, 63, 64, 65]  # the lookup does not
    drafter.update(6, 0)
    assert drafter.k == 2 and drafter.misses == 1  # a lookup's miss leaves k and pauses alone


def test_earliest_takes_the_first_occurrence_in_the_prompt_like_transformers_lookup():
    prompt = [50, 51, 1, 2, 50, 51, 3, 4]
    latest = CopyDrafter(SOURCE, context=prompt, start_draft=2)
    first = CopyDrafter(SOURCE, context=prompt, start_draft=2, earliest=True)
    assert latest.propose([50, 51]) == [3, 4]
    assert first.propose([50, 51]) == [1, 2]
    assert first.propose([70, 71, 72, 70, 71]) == [72, 70]  # not in the prompt: the generation


def test_min_match_copies_only_on_enough_matching_tokens_and_looks_up_otherwise():
    source, context = [50, 51, 52, 53], [1, 50, 60, 61]
    one = CopyDrafter(source, context=context, start_draft=2, min_match=1)
    assert one.propose([7, 50]) == [51, 52] and one.copying  # one token of evidence is enough
    two = CopyDrafter(source, context=context, start_draft=2, min_match=2)
    assert two.propose([7, 50]) == [60, 61] and not two.copying  # what followed 50 in the prompt
    assert two.propose([7, 50, 51]) == [52, 53] and two.copying
