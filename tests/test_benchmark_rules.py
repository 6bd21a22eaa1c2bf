"""The rules benchmarks apply to their own figures (which quantization ships), on made-up records."""

from __future__ import annotations

import pytest

pytest.importorskip("llama_cpp")

from benchmarks.bench_default_quant import NOISE, choose  # noqa: E402


def record(tok_s: float, agreement: float, parity: bool = True) -> dict:
    return {"decode_tok_s": tok_s, "token_agreement": agreement, "parity": parity}


def test_a_lighter_file_must_be_clearly_faster_to_replace_one_closer_to_f16():
    f16 = record(40.0, 1.0)
    within_noise = {"f16": f16, "q8_0": record(58.4, 0.9912), "q6_k": record(59.4, 0.9885)}
    assert choose(within_noise) == "q8_0"
    clearly = {"f16": f16, "q8_0": record(58.4, 0.9912), "q6_k": record(58.4 * (1 + 2 * NOISE), 0.9885)}
    assert choose(clearly) == "q6_k"


def test_files_failing_parity_are_never_chosen():
    records = {"f16": record(40.0, 1.0), "q8_0": record(58.0, 0.991),
               "q4_k_m": record(70.0, 0.94, parity=False)}
    assert choose(records) == "q8_0"
    assert choose({"f16": record(40.0, 1.0), "q4_k_m": record(70.0, 0.94, parity=False)}) == "f16"


def test_the_q8_0_adapter_keeps_the_adapters_keys_and_loads_as_a_lora(tmp_path):
    """The run-time adapter variant: every LoRA matrix in Q8_0, every key/value kept, and
    llama.cpp applies it on the packaged base (its greedy start matches the F16 adapter's)."""
    import gguf

    from benchmarks.bench_default_quant import _quantize_adapter
    from metaaligner_chain.backends.base import GenerationSettings
    from metaaligner_chain.backends.llamacpp import LlamaCppBackend
    from metaaligner_chain.models.defaults import ADAPTER_GGUF, default_gguf_path
    from metaaligner_chain.prompt import build_prompt

    out = _quantize_adapter(ADAPTER_GGUF, tmp_path / "adapter.q8_0.gguf")
    source, light = gguf.GGUFReader(ADAPTER_GGUF), gguf.GGUFReader(out)
    keys = {name: field.contents() for name, field in source.fields.items()
            if not name.startswith("GGUF.")}
    assert {name: light.fields[name].contents() for name in keys} == keys
    assert [t.name for t in light.tensors] == [t.name for t in source.tensors]
    assert {t.tensor_type for t in light.tensors} == {gguf.GGMLQuantizationType.Q8_0}
    assert out.stat().st_size < 0.6 * ADAPTER_GGUF.stat().st_size

    prompt = build_prompt("\n\nHuman: How do I boil an egg? \n\nAssistant:",
                          "Put it in water, you idiot.", ["harmlessness", "helpfulness"])
    settings = GenerationSettings(max_new_tokens=8)
    texts = []
    for lora in (ADAPTER_GGUF, out, None):
        backend = LlamaCppBackend(default_gguf_path(), lora_path=lora)
        texts.append(backend.generate([prompt], settings, ["Put it in water, you idiot."])[0].text)
        backend.close()
    assert texts[0] == texts[1] != texts[2]  # the adapter acts, and acts alike in Q8_0


def test_the_speed_issues_scorecard_agrees_with_the_results_files_and_gives_each_miss_a_reason(
        tmp_path, monkeypatch):
    import json

    from benchmarks import report

    def rows(lines):
        return [line.split(" | ") for line in lines if line.startswith("| ") and "---" not in line][1:]

    committed = rows(report.scorecard())
    assert committed and all(row[3].strip() for row in committed if row[2] == "**not met**")
    # A results file whose figure crosses its target turns the row to met, with no reason shown.
    data = json.loads((report.RESULTS / "drafting_llamacpp.json").read_text())
    for comparison in data["comparisons"]:
        comparison["variants"]["backend"]["fraction_of_ideal"] = 0.95
        comparison["vs_best_peer"] = 0.9
    (tmp_path / "drafting_llamacpp.json").write_text(json.dumps(data))
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    found = {row[0].lstrip("| "): row for row in rows(report.scorecard())}
    ideal = found[">= 90% of the cost curve's ideal on copy-heavy rewrites (llama.cpp)"]
    assert ideal[1:4] == ["95%", "met", ""]
    stock = found["ours >= 1.0x the best tuned stock lookup, every workload (llama.cpp)"]
    assert stock[2] == "**not met**" and stock[3]
    assert len(found) == 3  # only the files present are read
