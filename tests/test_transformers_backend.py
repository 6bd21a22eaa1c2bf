"""The transformers backend: a tiny in-process llama model, and the real SmolLM2-135M-Instruct."""

from __future__ import annotations

import shutil

import pytest

from metaaligner_chain.backends import GenerationSettings, PromptTooLongError, get_backend
from metaaligner_chain.backends.transformers.compiled import CXX, check_compiler
from metaaligner_chain.prompt import build_prompt
from streams import drain

GREEDY = GenerationSettings(max_new_tokens=10)
PROMPTS = [
    build_prompt("\n\nHuman: Bake bread? \n\nAssistant:", "Mix flour and water.", ["helpfulness"]),
    build_prompt("", "Paris.", ["humour", "length"]),
    build_prompt("\n\nHuman: How do I sleep better and longer at night? \n\nAssistant:", "Keep a schedule.", ["harmlessness"]),
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return get_backend("transformers", str(tiny_model_dir), batch_size=2)


def test_loads_once_per_model_and_options(tiny, tiny_model_dir):
    assert get_backend("transformers", str(tiny_model_dir), batch_size=2) is tiny
    assert get_backend("transformers", str(tiny_model_dir), batch_size=3) is not tiny
    assert tiny.device == "cpu" and str(tiny.dtype) == "torch.float32"
    assert tiny.context_length == 1024 and tiny.tokenizer.padding_side == "left"


def test_batched_left_padded_generation_equals_one_by_one(tiny):
    batched = tiny.generate(PROMPTS, GREEDY)  # batch_size=2: two length buckets
    assert [g.text for g in batched] == [tiny.generate([p], GREEDY)[0].text for p in PROMPTS]
    for generation, prompt in zip(batched, PROMPTS):
        assert generation.prompt_tokens == len(tiny.tokenizer(prompt)["input_ids"])
        assert generation.finish_reason in ("stop", "length")
        assert generation.completion_tokens <= 10


def test_decodes_only_new_tokens_and_stops_at_eos(tiny):
    (generation,) = tiny.generate([PROMPTS[0]], GREEDY)
    assert "You are an assistant" not in generation.text
    eos = tiny.tokenizer.eos_token_id
    assert tiny._finish([1, 2], [5, 6, eos, 7]).completion_tokens == 3
    finished = tiny._finish([1, 2], [5, 6, eos, 7])
    assert finished.finish_reason == "stop" and finished.text == tiny.tokenizer.decode([5, 6])
    assert tiny._finish([1], [5, 6]).finish_reason == "length"


def test_stream_joins_to_generate_and_returns_the_generation(tiny):
    pieces, finished = drain(tiny.stream(PROMPTS[2], GREEDY))
    (generated,) = tiny.generate([PROMPTS[2]], GREEDY)
    assert "".join(pieces) == generated.text == finished.text
    assert finished.finish_reason == generated.finish_reason


def test_max_new_tokens_is_bounded_by_the_context(tiny):
    long_prompt = "word " * 330
    (generation,) = tiny.generate([long_prompt], GenerationSettings(max_new_tokens=500))
    assert 990 <= generation.prompt_tokens < tiny.context_length
    assert generation.prompt_tokens + generation.completion_tokens <= tiny.context_length
    with pytest.raises(PromptTooLongError, match="Shorten the context or the response"):
        tiny.generate(["word " * 400], GREEDY)


def test_sampling_with_a_seed_is_reproducible(tiny):
    sampled = GenerationSettings(max_new_tokens=8, temperature=1.0, seed=7)
    assert tiny.generate([PROMPTS[0]], sampled)[0].text == tiny.generate([PROMPTS[0]], sampled)[0].text


def test_missing_model_is_a_clear_error(tmp_path):
    from metaaligner_chain.backends.transformers import TransformersBackend

    with pytest.raises(OSError, match="could not load aligner model"):
        TransformersBackend(str(tmp_path))


@pytest.fixture(scope="module")
def smollm2():
    from metaaligner_chain.models.defaults import default_hf_model_dir

    return get_backend("transformers", str(default_hf_model_dir()))


def test_real_smollm2_generates_and_stops_at_eos(smollm2):
    chat = "<|im_start|>user\nReply with the single word: yes<|im_end|>\n<|im_start|>assistant\n"
    (generation,) = smollm2.generate([chat], GenerationSettings(max_new_tokens=20))
    assert generation.finish_reason == "stop" and generation.text.strip()
    assert "<|im_end|>" not in generation.text


def test_real_smollm2_batch_stream_and_aligner_prompt(smollm2):
    settings = GenerationSettings(max_new_tokens=24)
    batched = smollm2.generate(PROMPTS[:2], settings)
    assert [g.text for g in batched] == [smollm2.generate([p], settings)[0].text for p in PROMPTS[:2]]
    assert all(g.text.strip() for g in batched)
    assert "".join(smollm2.stream(PROMPTS[0], settings)) == batched[0].text


@pytest.mark.parametrize("drafting", [True, False])
def test_an_abandoned_stream_never_blocks_other_callers(tiny, drafting):
    """Read once, then neither read nor closed: the model is free for other calls."""
    from concurrent.futures import ThreadPoolExecutor

    settings = GenerationSettings(max_new_tokens=200, drafting=drafting)
    want = tiny.generate([PROMPTS[0]], GREEDY)[0].text
    kept = tiny.stream(PROMPTS[1], settings)
    next(kept)
    with ThreadPoolExecutor(1) as pool:  # the guard against a hang, not a timing check
        assert pool.submit(tiny.generate, [PROMPTS[0]], GREEDY).result(timeout=300)[0].text == want
    kept.close()


def test_the_repeat_guard_bans_repeating_the_new_tokens_own_phrases_not_copying_the_prompt():
    import torch

    from metaaligner_chain.backends.transformers.backend import NO_REPEAT_NGRAM, _no_repeat_after

    phrase = [5, 6, 7]  # NO_REPEAT_NGRAM - 1 tokens; 8 would complete the phrase "5 6 7 8"
    assert NO_REPEAT_NGRAM == len(phrase) + 1
    prompt = [1, *phrase, 8, 2]
    guard = _no_repeat_after(len(prompt))
    scores = torch.zeros(1, 16)
    copying = guard(torch.tensor([prompt + phrase]), scores.clone())  # the phrase is the prompt's
    assert torch.isfinite(copying).all()
    repeating = guard(torch.tensor([prompt + [*phrase, 8, 3, *phrase]]), scores.clone())
    assert repeating[0, 8] == float("-inf") and torch.isfinite(repeating[0, :8]).all()


def test_generation_with_the_repeat_guard_leaves_a_loop_drafting_would_copy(tiny):
    from metaaligner_chain.judge import repeated_share

    settings = GenerationSettings(max_new_tokens=40, repeat_guard=True)
    (guarded,) = tiny.generate([PROMPTS[0]], settings, ["Mix flour and water."])
    pieces, streamed = drain(tiny.stream(PROMPTS[0], settings, "Mix flour and water."))
    assert "".join(pieces) == guarded.text == streamed.text
    assert guarded.stats is None  # transformers' generate, not the drafted loop
    (plain,) = tiny.generate([PROMPTS[0]], GenerationSettings(max_new_tokens=40))
    # the random tiny model loops greedily (word pairs recur); guarded, it moves on
    assert repeated_share(plain.text, 2) > 0.5 > 0.25 > repeated_share(guarded.text, 2)


def _log_p_token_by_token(backend, prompt: str, text: str) -> float:
    """log P(text, then EOS | prompt) by feeding the text one token at a time through the model's
    own forward and KV cache (the reference `score` must equal)."""
    import torch

    from metaaligner_chain.backends.transformers.drafting import cache_keyword

    ids = backend.tokenizer(prompt)["input_ids"]
    answer = [*backend.tokenizer(text, add_special_tokens=False)["input_ids"], backend.eos_ids[0]]
    cache = cache_keyword(backend.lm)
    want, past = 0.0, None
    with torch.inference_mode():
        feed = torch.tensor([ids])
        for token in answer:
            out = backend.lm(input_ids=feed, use_cache=True, **{cache: past})
            want += float(out.logits[0, -1].float().log_softmax(-1)[token])
            past, feed = out.past_key_values, torch.tensor([[token]])
    return want


def test_score_equals_the_log_probabilities_of_decoding_the_text_token_by_token(tiny):
    """`score` (one pass over prompt and text, the logits taken from the hidden states a block of
    rows at a time) against the model's own logits one token at a time, plus end-of-generation."""
    from metaaligner_chain.backends.transformers.backend import SCORE_ROWS

    prompt, text = PROMPTS[0], "Mix the flour with water, salt and yeast, then bake it. " * 3
    assert len(tiny.tokenizer(text)["input_ids"]) > 2 * SCORE_ROWS  # several blocks
    assert tiny._head_apart  # a llama model's logits are its head's alone
    got = tiny.score(prompt, [text, text])
    assert got[0] == pytest.approx(_log_p_token_by_token(tiny, prompt, text), abs=1e-3)
    assert got[1] == got[0]
    assert tiny.capabilities.scoring


def test_score_of_a_model_that_caps_its_logits_uses_its_own_forward(tmp_path):
    """Gemma 2 squashes its logits after the head (final_logit_softcapping): the backend sees that
    the head alone would give other logits and scores through the model's forward instead."""
    import torch
    from transformers import Gemma2Config, Gemma2ForCausalLM

    from metaaligner_chain.backends.transformers.backend import TransformersBackend
    from trainer.train.tiny import build_tokenizer

    tokenizer = build_tokenizer()
    config = Gemma2Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=1024,
        final_logit_softcapping=2.0, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    Gemma2ForCausalLM(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    capped = TransformersBackend(str(tmp_path))
    assert not capped._head_apart
    prompt, text = PROMPTS[1], "Paris is the capital of France. " * 3
    got = capped.score(prompt, [text])[0]
    assert got == pytest.approx(_log_p_token_by_token(capped, prompt, text), abs=1e-3)


def test_the_transposed_head_computes_transformers_own_logits_with_the_same_weight(tiny, tiny_model_dir):
    """On the CPU in fp32 the backend takes the logits' product as (W @ h.T).T (measured faster
    at the rows drafting verifies); the numbers are the `Linear`'s, the weight is shared, not
    copied, and tied embeddings stay tied. `transposed_head=False` keeps transformers' layer."""
    import torch

    from metaaligner_chain.backends.transformers.head import TransposedHead

    head = tiny.lm.get_output_embeddings()
    assert tiny.transposed_head and isinstance(head, TransposedHead)
    stock = get_backend("transformers", str(tiny_model_dir), batch_size=2, transposed_head=False)
    assert not stock.transposed_head and type(stock.lm.get_output_embeddings()) is torch.nn.Linear
    if tiny.lm.config.tie_word_embeddings:
        assert head.weight is tiny.lm.get_input_embeddings().weight
    hidden = torch.randn(3, 5, head.weight.shape[1], generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        got = head(hidden)
        want = torch.nn.functional.linear(hidden, head.weight)
    assert got.shape == want.shape == (3, 5, head.weight.shape[0])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_two_workers_serve_concurrent_callers_the_same_answers(tiny_model_dir, monkeypatch):
    """`workers=2`: two calls decode at once on the shared model (torch's threads divided between
    them); concurrent callers, drafted or not, get what one worker gives one after another, and
    one greedy batch is split between the two workers."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import torch

    threads = torch.get_num_threads()
    try:
        two = get_backend("transformers", str(tiny_model_dir), batch_size=2, workers=2)
        assert two.workers == 2 and torch.get_num_threads() == max(1, threads // 2)
        one = get_backend("transformers", str(tiny_model_dir), batch_size=2)
        plain = GenerationSettings(max_new_tokens=10, drafting=False)
        calls = [(prompt, settings) for prompt in PROMPTS for settings in (GREEDY, plain)] * 2
        want = [one.generate([prompt], settings, ["Mix flour and water."])[0] for prompt, settings in calls]
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(lambda c: two.generate([c[0]], c[1], ["Mix flour and water."])[0], calls))
        assert [g.text for g in got] == [w.text for w in want]
        scores = list(ThreadPoolExecutor(2).map(lambda t: two.score(PROMPTS[0], [t]), ["Yes.", "No."] * 2))
        assert scores[0] == scores[2] and scores[1] == scores[3]

        workers, chunk = set(), two._chunk
        monkeypatch.setattr(two, "_chunk", lambda *a: workers.add(threading.get_ident()) or chunk(*a))
        for settings in (GREEDY, plain):
            answers = ["Mix flour and water.", "Paris.", None] * 2
            batch = two.generate(PROMPTS * 2, settings, answers)
            assert [g.text for g in batch] == [g.text for g in one.generate(PROMPTS * 2, settings, answers)]
        assert len(workers) == 2
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("workers", [0, -1, 1.5, True])
def test_workers_must_be_a_whole_number_of_at_least_one(tiny_model_dir, workers):
    with pytest.raises(ValueError, match="`workers` is"):
        get_backend("transformers", str(tiny_model_dir), workers=workers)


@pytest.mark.skipif(not any(shutil.which(cxx) for cxx in CXX),
                    reason="torch's inductor needs a C++ compiler on the CPU")
def test_compile_runs_generate_through_a_compiled_decoder_with_the_same_tokens(tiny, tiny_model_dir):
    """`compile=True`: `generate`'s paths (`drafting=False`, sampling with a seed) give the eager
    backend's tokens through a compiled copy of the decoder; the model itself, which the drafted
    loop and `score` use, stays eager and shares every weight. (One prompt at a time: each batch
    width is a graph of its own, ~15 s to compile on 2 cores.)"""
    compiled = get_backend("transformers", str(tiny_model_dir), batch_size=1, compile=True)
    for settings in (GenerationSettings(max_new_tokens=10, drafting=False),
                     GenerationSettings(max_new_tokens=10, temperature=0.8, seed=3)):
        for prompt in PROMPTS[::2]:
            assert compiled.generate([prompt], settings)[0].text == tiny.generate([prompt], settings)[0].text
    decoder, view = compiled.lm.get_decoder(), compiled._generator.get_decoder()
    assert view is not decoder and view._compiled_call_impl is not None
    assert decoder._compiled_call_impl is None
    assert view.layers is decoder.layers and view.embed_tokens.weight is decoder.embed_tokens.weight
    assert compiled.generate([PROMPTS[0]], GREEDY)[0].text == tiny.generate([PROMPTS[0]], GREEDY)[0].text


def test_compile_without_a_cxx_compiler_is_a_clear_error_at_load(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no compiler on it
    with pytest.raises(RuntimeError, match=r"`compile=True` on the CPU needs a C\+\+ compiler.*compile=False"):
        get_backend("transformers", str(tiny_model_dir), batch_size=3, compile=True)


def test_compile_on_cuda_without_triton_is_a_clear_error():
    from torch.utils._triton import has_triton

    if has_triton():
        pytest.skip("Triton is installed here")
    with pytest.raises(RuntimeError, match=r"`compile=True` on CUDA needs Triton.*compile=False"):
        check_compiler("cuda")
