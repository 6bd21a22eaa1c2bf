"""Drafted greedy decoding in the transformers backend gives exactly plain `generate`'s tokens.

Covers single prompts and batches, responses the model copies and ones it does not, EOS and
max_new_tokens limits, prefix reuse on and off, and the draft stats, on the tiny llama and on the
real SmolLM2-135M-Instruct copy.
"""

from __future__ import annotations

import pytest

from metaaligner_chain.backends import GenerationSettings, get_backend
from metaaligner_chain.backends.transformers.drafting import PrefixCache, decode_greedy
from metaaligner_chain.prompt import build_prompt
from streams import drain

PLAIN = GenerationSettings(max_new_tokens=16, drafting=False)
DRAFTED = GenerationSettings(max_new_tokens=16)
ITEMS = [
    ("\n\nHuman: Bake bread? \n\nAssistant:", "Mix flour and water, knead, let it rise and bake."),
    ("", "Paris is the capital of France."),
    ("\n\nHuman: How do I sleep better? \n\nAssistant:", "Keep a schedule and avoid screens late."),
]
FAITHFUL = ["Faithfulness: keep the answer's own words and fix only clear errors"]


def _prompts(objectives=("helpfulness",)):
    return [build_prompt(q, r, list(objectives)) for q, r in ITEMS]


def _same(a, b):
    assert [(g.text, g.completion_tokens, g.finish_reason) for g in a] == [
        (g.text, g.completion_tokens, g.finish_reason) for g in b
    ]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    backend = get_backend("transformers", str(tiny_model_dir), batch_size=2)
    backend.draft_batches = True  # batches through the drafted loop too
    yield backend
    backend.draft_batches = False


def test_tiny_drafted_equals_plain_when_the_model_copies_and_when_it_does_not(tiny):
    prompts = _prompts()
    plain = tiny.generate(prompts, PLAIN)
    copied = [g.text for g in plain]  # a response the model reproduces: every draft accepted
    edited = [t[: len(t) // 2] + " xyz " + t[len(t) // 2 :] for t in copied]  # copies, then not
    unrelated = [r for _, r in ITEMS]
    for responses in (copied, edited, unrelated, None):
        drafted = tiny.generate(prompts, DRAFTED, responses)  # batches of 2 + 1
        _same(drafted, plain)
        for prompt, response, want in zip(prompts, responses or [None] * 3, plain):
            _same(tiny.generate([prompt], DRAFTED, [response]), [want])  # one by one
    stats = [g.stats for g in tiny.generate(prompts, DRAFTED, copied)]
    assert all(s["accepted_tokens"] <= s["drafted_tokens"] for s in stats)
    assert sum(s["accepted_tokens"] for s in stats) > 0


def test_a_weak_copy_match_drafts_what_the_stock_lookup_would():
    """A one-token match with the response is not enough to copy from it (`min_match` 2), but the
    step still drafts from the prompt as transformers' prompt lookup does, and that draft's
    outcome leaves the copy state (cursor, pauses) alone."""
    from metaaligner_chain.backends.transformers.drafting import DRAFTER, _Row
    from metaaligner_chain.drafting import CopyDrafter

    response, prompt = [50, 51, 52, 53], [1, 50, 60, 61, 62]
    row = _Row(prompt, 100, CopyDrafter(response, context=prompt, **DRAFTER))
    row.out = [7, 50]  # ends in the response's first token, one token of evidence
    assert row.draft() == [60, 61, 62, 7, 50]  # what followed 50 in the prompt, then the generation
    assert not row.drafter.copying
    cursor = row.drafter.cursor
    row.verified(5, 0)
    assert (row.drafter.cursor, row.drafter.pause, row.drafter.misses) == (cursor, 0, 0)
    row.out = [7, 50, 51]  # two tokens of the response: copy it
    assert row.draft()[:2] == [52, 53] and row.drafter.copying


def _plain_ids(backend, prompts, limit):
    import torch

    rows, device = [], backend.lm.device
    for prompt in prompts:
        ids = backend.tokenizer(prompt)["input_ids"]
        out = backend.lm.generate(
            torch.tensor([ids], device=device),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=device),
            max_new_tokens=limit, do_sample=False, eos_token_id=backend.eos_ids,
            pad_token_id=backend.tokenizer.pad_token_id,
        )
        rows.append((ids, out[0, len(ids):].tolist()))
    return rows


def test_tiny_drafts_of_the_exact_output_are_all_accepted_in_a_batch(tiny):
    """The tiny model writes broken UTF-8, so drafts are seeded with its token ids directly."""
    rows = _plain_ids(tiny, _prompts(), 24)
    decoded = decode_greedy(
        tiny.lm, [ids for ids, _ in rows], max_new_tokens=[24] * 3, eos_ids=tiny.eos_ids,
        pad_id=tiny.tokenizer.pad_token_id, responses=[new for _, new in rows],
    )
    assert [new for new, _ in decoded] == [new for _, new in rows]
    for (new, stats), (_, want) in zip(decoded, rows):
        assert stats["accepted_tokens"] == stats["drafted_tokens"] >= len(want) // 2
    edited = [new[:5] + [new[5] + 1] + new[6:] for _, new in rows]  # one changed token
    decoded = decode_greedy(
        tiny.lm, [ids for ids, _ in rows], max_new_tokens=[24] * 3, eos_ids=tiny.eos_ids,
        pad_id=tiny.tokenizer.pad_token_id, responses=edited,
    )
    assert [new for new, _ in decoded] == [new for _, new in rows]


def test_tiny_drafted_stops_at_eos_and_max_new_tokens_like_plain(tiny, monkeypatch):
    prompts = _prompts()
    copied = [g.text for g in tiny.generate(prompts, PLAIN)]
    eos = _plain_ids(tiny, prompts[:1], 8)[0][1][4]
    monkeypatch.setattr(tiny, "eos_ids", [eos])  # EOS right inside a copied stretch
    for limit in (1, 3, 7, 16):
        plain = tiny.generate(prompts, GenerationSettings(max_new_tokens=limit, drafting=False))
        drafted = tiny.generate(prompts, GenerationSettings(max_new_tokens=limit), copied)
        _same(drafted, plain)
    assert tiny.generate([prompts[0]], DRAFTED, copied[:1])[0].finish_reason == "stop"


def test_tiny_prefix_reuse_gives_the_same_tokens(tiny, monkeypatch):
    prompts = _prompts(("harmlessness", "humour"))
    monkeypatch.setattr(tiny, "prefixes", PrefixCache(0))
    without = [tiny.generate([p], DRAFTED, [r])[0] for p, (_, r) in zip(prompts, ITEMS)]
    monkeypatch.setattr(tiny, "prefixes", PrefixCache(4))
    with_reuse = [tiny.generate([p], DRAFTED, [r])[0] for p, (_, r) in zip(prompts, ITEMS)]
    _same(with_reuse, without)
    shared, _ = tiny.prefixes.longest([tiny.tokenizer(prompts[2])["input_ids"]])
    objectives_part = build_prompt("\x00", "", ["harmlessness", "humour"]).split("\x00")[0]
    assert shared >= len(tiny.tokenizer(objectives_part)["input_ids"]) - 1
    _same(tiny.generate(prompts, DRAFTED), tiny.generate(prompts, PLAIN))  # batch from the cache


def test_tiny_stream_with_drafting_joins_to_plain_and_returns_stats(tiny):
    prompt = _prompts()[2]
    (plain,) = tiny.generate([prompt], PLAIN)
    pieces, finished = drain(tiny.stream(prompt, DRAFTED, plain.text))
    assert "".join(pieces) == plain.text == finished.text
    assert set(finished.stats) == {"drafted_tokens", "accepted_tokens"}


@pytest.fixture(scope="module")
def smollm2():
    from metaaligner_chain.models.defaults import default_hf_model_dir

    backend = get_backend("transformers", str(default_hf_model_dir()))
    backend.draft_batches = True
    yield backend
    backend.draft_batches = False


def test_real_smollm2_drafted_equals_plain_single_and_batched(smollm2):
    settings = GenerationSettings(max_new_tokens=24)
    prompts = [build_prompt(q, r, FAITHFUL) for q, r in ITEMS] + _prompts(("harmlessness",))[:1]
    responses = [r for _, r in ITEMS] + [ITEMS[0][1]]
    plain = smollm2.generate(prompts, GenerationSettings(max_new_tokens=24, drafting=False))
    drafted = smollm2.generate(prompts, settings, responses)
    _same(drafted, plain)
    _same([smollm2.generate([prompts[3]], settings, [responses[3]])[0]], [plain[3]])
    assert any(g.finish_reason == "stop" for g in plain)
    assert sum(g.stats["accepted_tokens"] for g in drafted) > 0
    short = GenerationSettings(max_new_tokens=5)
    _same(
        smollm2.generate(prompts[:2], short, responses[:2]),
        smollm2.generate(prompts[:2], GenerationSettings(max_new_tokens=5, drafting=False)),
    )
