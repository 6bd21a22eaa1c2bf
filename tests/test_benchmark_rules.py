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
