"""LoRA adapters at inference: peft folders in transformers, and the adapter shipped as the default
(once, as a GGUF LoRA: merged for llama.cpp, that merge dequantized for transformers)."""

from __future__ import annotations

import json

import pytest

from metaaligner_chain import MetaAlignerRunnable
from metaaligner_chain.backends import GenerationSettings, get_backend
from metaaligner_chain.models.defaults import (
    ADAPTER_DIR,
    ADAPTER_GGUF,
    default_aligner_gguf,
    default_aligner_light,
    default_aligner_hf_dir,
    default_backend_options,
    default_gguf_path,
    default_hf_model_dir,
)
from metaaligner_chain.models.gguf_header import read_gguf_header
from metaaligner_chain.models.metadata import read_metadata
from metaaligner_chain.prompt import build_prompt

PROMPT = build_prompt("\n\nHuman: Bake bread? \n\nAssistant:", "Mix flour and water.", ["helpfulness"])


@pytest.fixture(scope="module")
def tiny_adapter(tiny_model_dir, tmp_path_factory):
    """A peft LoRA on the tiny model with non-zero weights (so it changes the output)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    config = LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj", "down_proj"],
                        init_lora_weights=False, task_type="CAUSAL_LM")
    folder = tmp_path_factory.mktemp("tiny-adapter")
    get_peft_model(base, config).save_pretrained(str(folder))
    (folder / "metaaligner.json").write_text(json.dumps({"prompt_format": "imhi"}))
    return folder


def test_transformers_adapter_is_merged_into_the_weights(tiny_model_dir, tiny_adapter):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    settings = GenerationSettings(max_new_tokens=12)
    plain = get_backend("transformers", str(tiny_model_dir))
    adapted = get_backend("transformers", str(tiny_model_dir), adapter=str(tiny_adapter))
    assert adapted is not plain and adapted.metadata == {"prompt_format": "imhi"}
    assert not any("lora" in name for name, _ in adapted.lm.named_parameters())  # merged

    reference = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)), str(tiny_adapter)
    ).eval()
    ids = adapted.tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        torch.testing.assert_close(adapted.lm(ids).logits, reference(ids).logits, atol=1e-4, rtol=1e-4)
        assert not torch.allclose(plain.lm(ids).logits, reference(ids).logits, atol=1e-3)
    (ours,) = adapted.generate([PROMPT], settings)
    (drafted,) = adapted.generate([PROMPT], settings, [ours.text])
    assert drafted.text == ours.text


def test_adapter_that_is_not_a_peft_folder_is_a_clear_error(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match=r"`adapter` .* is not a peft adapter folder"):
        get_backend("transformers", str(tiny_model_dir), adapter=str(tmp_path))


def test_runnable_reads_the_prompt_format_from_a_peft_adapter(tiny_model_dir, tiny_adapter):
    aligner = MetaAlignerRunnable(
        objectives=["correctness"], model=str(tiny_model_dir),
        backend_options={"adapter": str(tiny_adapter)},
    )
    assert aligner.resolved_prompt_format() == "imhi"


def test_the_adapter_is_shipped_once_and_its_files_agree():
    from gguf import GGUFReader

    assert {p.name for p in ADAPTER_DIR.iterdir()} == {"adapter.gguf", "metaaligner.json"}
    metadata = json.loads((ADAPTER_DIR / "metaaligner.json").read_text())
    header = read_gguf_header(ADAPTER_GGUF)
    assert header["general.type"] == "adapter" and header["adapter.type"] == "lora"
    assert header["adapter.lora.alpha"] == metadata["training"]["lora_alpha"]
    lora_a = [t for t in GGUFReader(str(ADAPTER_GGUF)).tensors if t.name.endswith(".lora_a")]
    assert {t.data.shape[0] for t in lora_a} == {metadata["training"]["lora_r"]}
    assert header["metaaligner.prompt_format"] == metadata["prompt_format"] == "hh-rlhf"
    assert set(metadata["stages"]) == {"warmup", "equal", "preference"}


def test_the_default_runnable_applies_the_shipped_adapter_unless_told_not_to():
    assert default_backend_options("llama.cpp") == {"lora_path": str(ADAPTER_GGUF)}
    assert default_backend_options("transformers") == {}  # its default has the adapter merged
    default = MetaAlignerRunnable(objectives=["harmlessness"]).load_backend()
    assert (default.model, default.lora_path) == (str(default_aligner_light()), None)  # merged in
    assert read_gguf_header(default_aligner_light())["general.file_type"] == 7  # Q8_0, from the F16 merge
    bare = MetaAlignerRunnable(objectives=["harmlessness"], backend_options={"lora_path": None})
    assert (bare.load_backend().model, bare.load_backend().lora_path) == (str(default_gguf_path()), None)


def test_a_cold_start_builds_the_default_in_a_fresh_interpreter(tmp_path, monkeypatch):
    from metaaligner_chain.models import gguf_merge

    def not_here(*args):
        raise AssertionError("built in the serving process")

    monkeypatch.setattr(gguf_merge, "merge_lora_gguf", not_here)
    monkeypatch.setattr(gguf_merge, "quantize_gguf", not_here)
    light = default_aligner_light(tmp_path)  # built by the child: this process never merges
    assert light.parent.parent == tmp_path and read_gguf_header(light)["general.file_type"] == 7
    assert read_gguf_header(default_aligner_gguf(tmp_path))["general.file_type"] == 1  # F16, kept


def test_a_build_the_child_cannot_run_is_done_in_this_process(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.executable", str(tmp_path / "bin" / "python3"))  # not there
    light = default_aligner_light(tmp_path / "cache")
    assert read_gguf_header(light)["general.file_type"] == 7
    assert read_gguf_header(light)["metaaligner.prompt_format"] == "hh-rlhf"


def test_an_embedding_host_is_never_started_as_a_build(tmp_path, monkeypatch):
    started = tmp_path / "host-started"
    host = tmp_path / "uwsgi"  # sys.executable under an embedding host names the host
    host.write_text(f"#!/bin/sh\ntouch {started}\n")
    host.chmod(0o755)
    monkeypatch.setattr("sys.executable", str(host))
    light = default_aligner_light(tmp_path / "cache")  # built in this process
    assert read_gguf_header(light)["general.file_type"] == 7 and not started.exists()


def test_the_merged_default_is_the_base_plus_the_adapter_and_carries_its_metadata():
    import numpy as np
    from gguf import GGUFReader
    from gguf.quants import dequantize

    base, adapter = GGUFReader(str(default_gguf_path())), GGUFReader(str(ADAPTER_GGUF))
    merged = GGUFReader(str(default_aligner_gguf()))
    tensors = {t.name: t for t in merged.tensors}
    assert set(tensors) == {t.name for t in base.tensors}
    alpha = float(adapter.fields["adapter.lora.alpha"].contents())
    factors = {t.name: np.asarray(t.data, np.float32) for t in adapter.tensors}
    for name in ("blk.3.attn_q.weight", "blk.29.ffn_down.weight", "blk.0.attn_norm.weight"):
        (source,) = [t for t in base.tensors if t.name == name]
        expected = dequantize(source.data, source.tensor_type).astype(np.float32)
        if f"{name}.lora_a" in factors:
            a, b = factors[f"{name}.lora_a"], factors[f"{name}.lora_b"]
            delta = alpha / a.shape[0] * (b @ a)
            assert np.abs(delta).max() > 0  # the adapter does change this weight
            expected += delta
        got = np.asarray(tensors[name].data, np.float32)
        assert np.allclose(got, expected, rtol=1e-3, atol=1e-4)  # F16 rounding only
    assert read_gguf_header(default_aligner_gguf())["metaaligner.prompt_format"] == "hh-rlhf"


def test_the_streamed_merge_equals_merging_whole_tensors(tmp_path):
    """Row chunks (the token embedding spans many) and file reads change no bit of the merge."""
    import numpy as np
    from gguf import GGUFReader
    from gguf.quants import dequantize

    from metaaligner_chain.models.gguf_merge import _ROWS, merge_lora_gguf

    out = merge_lora_gguf(default_gguf_path(), ADAPTER_GGUF, tmp_path / "merged.gguf")
    base, adapter, merged = (GGUFReader(str(p)) for p in (default_gguf_path(), ADAPTER_GGUF, out))
    alpha = float(adapter.fields["adapter.lora.alpha"].contents())
    factors = {t.name: np.asarray(t.data, np.float32) for t in adapter.tensors}
    got = {t.name: t for t in merged.tensors}
    assert [t.name for t in merged.tensors] == [t.name for t in base.tensors]
    for source in base.tensors[:12]:  # the embedding (49,152 rows), norms, adapted matrices
        expected = dequantize(source.data, source.tensor_type).astype(np.float32)
        if f"{source.name}.lora_a" in factors:
            a, b = factors[f"{source.name}.lora_a"], factors[f"{source.name}.lora_b"]
            expected += alpha / a.shape[0] * (b @ a)
        expected = expected.astype(np.float16 if expected.ndim > 1 else np.float32)
        assert np.array_equal(got[source.name].data, expected), source.name
    assert base.tensors[0].data.shape[0] > _ROWS
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "llama.rope.freq_base"):
        assert merged.fields[key].contents() == base.fields[key].contents()
    assert merged.fields["general.file_type"].contents() == 1  # F16


def test_gguf_contents_match_gguf_readers():
    from gguf import GGUFReader

    from metaaligner_chain.models.gguf_header import read_gguf_contents

    fields, tensors = read_gguf_contents(default_gguf_path())
    reader = GGUFReader(str(default_gguf_path()))
    stock = {k: f for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    assert [key for key, *_ in fields] == list(stock)
    for key, kind, item, value in fields:
        assert (kind, item) == (stock[key].types[0], stock[key].types[-1] if item else None)
        assert value == stock[key].contents(), key
    assert [(t.name, t.kind, t.offset) for t in tensors] == [
        (t.name, t.tensor_type, t.data_offset) for t in reader.tensors
    ]


def test_gguf_contents_of_a_cut_or_foreign_file_are_clear_errors(tmp_path):
    from metaaligner_chain.models.gguf_header import read_gguf_contents

    cut = tmp_path / "cut.gguf"
    with open(default_gguf_path(), "rb") as source:
        cut.write_bytes(source.read(500_000))  # inside the vocabulary
    with pytest.raises(ValueError, match="cut.gguf.*damaged or truncated GGUF header"):
        read_gguf_contents(cut)
    foreign = tmp_path / "zip.gguf"
    foreign.write_bytes(b"PK\x03\x04 a zip, not a model" * 4)
    with pytest.raises(ValueError, match="is not a GGUF file"):
        read_gguf_contents(foreign)


def test_merging_something_that_is_not_an_adapter_is_a_clear_error(tmp_path):
    from metaaligner_chain.models.gguf_merge import merge_lora_gguf

    with pytest.raises(ValueError, match="not a GGUF LoRA adapter"):
        merge_lora_gguf(default_gguf_path(), default_gguf_path(), tmp_path / "out.gguf")


def test_the_default_falls_back_to_the_adapter_at_run_time_when_it_cannot_merge(tmp_path, monkeypatch, caplog):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")  # the cache root is a file: nothing can be built under it
    monkeypatch.setenv("METAALIGNER_CACHE", str(blocked))
    engine = MetaAlignerRunnable(objectives=["harmlessness"]).load_backend()
    assert (engine.model, engine.lora_path) == (str(default_gguf_path()), ADAPTER_GGUF)
    assert "applying its adapter at run time" in caplog.text


def test_the_transformers_default_is_the_merged_gguf_dequantized_with_no_adapter():
    folder = default_aligner_hf_dir()
    assert folder.name.startswith("smollm2-135m-aligner-hf-") and default_aligner_hf_dir() == folder
    shipped = (ADAPTER_DIR / "metaaligner.json").read_bytes()
    assert (folder / "metaaligner.json").read_bytes() == shipped
    engine = MetaAlignerRunnable(objectives=["harmlessness"], backend="transformers").load_backend()
    assert (engine.model, engine.adapter) == (str(folder), None)
    assert engine.metadata["prompt_format"] == "hh-rlhf"  # read from the folder's metaaligner.json
    bare = MetaAlignerRunnable(objectives=["harmlessness"], backend="transformers",
                               backend_options={"adapter": None}).load_backend()
    assert (bare.model, bare.adapter) == (str(default_hf_model_dir()), None)


def test_new_shipped_metadata_reaches_the_transformers_copy_without_rebuilding_it(tmp_path, monkeypatch):
    from metaaligner_chain.models import defaults

    folder = default_aligner_hf_dir()
    built = (folder / "model.safetensors").stat().st_mtime_ns
    edited = json.loads(defaults.ADAPTER_METADATA.read_text())
    edited["keep_margin"] = {"length": 3.0, "*": 7.0}
    new_file = tmp_path / "metaaligner.json"
    new_file.write_text(json.dumps(edited))
    monkeypatch.setattr(defaults, "ADAPTER_METADATA", new_file)  # as if a release changed margins

    assert default_aligner_hf_dir() == folder  # same weights, same folder
    # what a user loading the folder itself as `model=` reads
    assert read_metadata(folder)["keep_margin"] == {"length": 3.0, "*": 7.0}

    monkeypatch.undo()
    assert default_aligner_hf_dir() == folder
    assert (folder / "metaaligner.json").read_bytes() == (ADAPTER_DIR / "metaaligner.json").read_bytes()
    assert (folder / "model.safetensors").stat().st_mtime_ns == built
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]  # no staging file left


def test_the_transformers_default_weights_are_the_base_plus_the_adapter():
    import numpy as np
    from gguf import GGUFReader
    from safetensors import safe_open

    adapter = GGUFReader(str(ADAPTER_GGUF))
    alpha = float(adapter.fields["adapter.lora.alpha"].contents())
    factors = {t.name: np.asarray(t.data, np.float32) for t in adapter.tensors}
    aligner = safe_open(str(default_aligner_hf_dir() / "model.safetensors"), "np")
    base = safe_open(str(default_hf_model_dir() / "model.safetensors"), "np")
    layers = ((10, "self_attn.v_proj", "attn_v"), (29, "mlp.down_proj", "ffn_down"))
    for layer, hf_name, gguf_name in layers:
        a = factors[f"blk.{layer}.{gguf_name}.weight.lora_a"]
        b = factors[f"blk.{layer}.{gguf_name}.weight.lora_b"]
        before = base.get_tensor(f"model.layers.{layer}.{hf_name}.weight")
        got = aligner.get_tensor(f"model.layers.{layer}.{hf_name}.weight")
        expected = before + alpha / a.shape[0] * (b @ a)
        f16_step = np.abs(expected) * 2**-10 + 2**-24  # one F16 unit in the last place
        assert np.all(np.abs(got - expected) <= f16_step)  # the merge's F16 rounding only
        assert np.mean(np.abs(got - before) > f16_step) > 0.5  # and the adapter is in there


# The shipped default aligner on llama.cpp, decoded drafted and plain alike. None of these
# answers is in its training corpus (examples/default_aligner/corpus/).
CLEAN = (
    "Rinse the rice until the water runs clear, then simmer one cup of rice in two cups of water "
    "with the lid on for about fifteen minutes. Let it rest for five minutes before serving."
)
FIRST = CLEAN.split(". ")[0] + "."
EDITS = [  # (response given, objectives, what the aligner writes: None = not checked word for word)
    (CLEAN, ["humour"], CLEAN),  # a clean answer is copied
    (CLEAN, ["length"], CLEAN),
    (f"{CLEAN} Honestly, only a fool would not know this.", ["harmlessness"], None),
    (f"{CLEAN} {FIRST}", ["repetition"], None),
    (CLEAN, ["harmlessness", "helpfulness"], None),  # only drafting is checked
]


@pytest.fixture(scope="module")
def default_llama():
    """The engine the default runnable uses (shared through `get_backend`, loaded once)."""
    return MetaAlignerRunnable(objectives=["harmlessness"]).load_backend()


@pytest.mark.parametrize("response,objectives,expected", EDITS)
def test_the_default_aligner_copies_clean_answers_and_drafting_changes_no_token(
    default_llama, response, objectives, expected
):
    prompt = build_prompt("\n\nHuman: How do I cook fluffy rice? \n\nAssistant:", response, objectives)
    plain = default_llama.generate([prompt], GenerationSettings(max_new_tokens=96, drafting=False))[0]
    drafted = default_llama.generate([prompt], GenerationSettings(max_new_tokens=96), [response])[0]
    assert (drafted.text, drafted.completion_tokens) == (plain.text, plain.completion_tokens)
    if expected is not None:
        assert plain.text.strip() == expected
    assert drafted.stats["acceptance"] > 0.7
    assert drafted.stats["forward_passes"] < drafted.completion_tokens


def test_an_echo_is_cut_short_in_invoke_and_batch_and_the_original_kept(default_llama, monkeypatch):
    # What small aligners write when they continue the prompt instead of answering (the previous
    # default did so on this exchange): the engine's stream is replaced by that text.
    query = "\n\nHuman: Can you explain what inflation is? \n\nAssistant:"
    answer = (
        "Inflation is the rate at which the general level of prices rises over time. When inflation "
        "is high, each unit of money buys fewer goods and services, so savings lose value unless "
        "they earn interest above the inflation rate."
    )
    echo = ("Harmlessness: The response should avoid content that is offensive, discriminatory, or "
            "harmful; Helpfulness: The response should provide useful resources") * 4
    pieces = []

    def echoing(*args, **kwargs):  # an endless echo, counting what is consumed
        for start in range(0, len(echo), 8):
            pieces.append(echo[start : start + 8])
            yield echo[start : start + 8]

    monkeypatch.setattr(default_llama, "stream", echoing)
    aligner = MetaAlignerRunnable(objectives=["harmlessness", "helpfulness"], max_new_tokens=128,
                                  candidates=1)  # counts what one decoding consumes
    item = {"query": query, "response": answer}
    assert aligner.invoke(item)["response"] == answer  # the original, unchanged
    assert 64 <= len("".join(pieces)) < 2 * 64  # stopped once the first 64 characters were checked
    pieces.clear()
    assert [out["response"] for out in aligner.batch([item, item])] == [answer, answer]
    assert 2 * 64 <= len("".join(pieces)) < 2 * 2 * 64


def test_an_answer_ending_in_blank_lines_is_copied_without_trailing_junk(default_llama):
    # What the demo's policy wrote at 96 tokens (examples/quickstart.py, first example), blank lines
    # included.
    answer = (
        "Dealing with a noisy neighbour can be frustrating and affect your personal life. I'm here "
        "to help you navigate this situation, but if you're not ready to talk about it, don't "
        "hesitate! If you need any assistance or have concerns, please do reach out to me directly. "
        "I'll do my best to support you. However, if you've already tried all the usual avenues and "
        "haven't heard back from them, I'm here to help with that too.\n\n"
    )
    # one decoding: stream() below, which it must equal, leaves out the choice among candidates
    aligner = MetaAlignerRunnable(objectives=["harmlessness", "helpfulness"], max_new_tokens=160,
                                  candidates=1)
    item = {"query": "How can I get back at my noisy neighbour?", "response": answer}
    out = aligner.invoke(item)["response"]
    assert out == answer.strip()
    assert "".join(chunk.get("response", "") for chunk in aligner.stream(item)) == out


def test_the_transformers_default_copies_a_clean_answer_and_the_base_does_not():
    prompt = build_prompt("\n\nHuman: How do I cook fluffy rice? \n\nAssistant:", CLEAN, ["humour"])
    aligner = MetaAlignerRunnable(objectives=["humour"], backend="transformers").load_backend()
    bare = MetaAlignerRunnable(objectives=["humour"], backend="transformers",
                               backend_options={"adapter": None}).load_backend()
    (aligned,) = aligner.generate([prompt], GenerationSettings(max_new_tokens=64), [CLEAN])
    (untrained,) = bare.generate([prompt], GenerationSettings(max_new_tokens=8, drafting=False))
    assert aligned.text.strip() == CLEAN  # as the llama.cpp default does (above)
    assert untrained.text.strip() and not CLEAN.startswith(untrained.text.strip())
