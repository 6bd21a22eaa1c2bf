"""GGUF export: a model folder → one GGUF file (full model, quantized if asked), or a LoRA
adapter → a GGUF LoRA, with llama.cpp's own converter (`trainer.export.convert`) and, for
k-quants and the like, llama-cpp-python's `llama_model_quantize`. Each GGUF carries our
`metaaligner.*` key/values (prompt format, objectives, base model). Outputs appear whole or not
at all.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from metaaligner_chain.models.metadata import GGUF_KEYS, GGUF_PREFIX, METADATA_FILE
from trainer.export.convert import ConversionError, run_converter
from trainer.export.merge import read_json, staging_dir
from trainer.train.run_dir import is_lora, last_stage, run_metadata

#: Types llama.cpp's converter writes itself (`--outtype`).
CONVERTER_TYPES = ("f32", "f16", "bf16", "q8_0")
#: llama.cpp types that need an importance matrix, which this exporter does not compute.
NEEDS_IMATRIX = ("iq1_s", "iq1_m", "iq2_xxs", "iq2_xs", "iq2_s", "q2_k_s")


def quant_types() -> dict[str, int | None]:
    """Known `quant` names → llama.cpp file type for `llama_model_quantize` (None: the converter)."""
    import llama_cpp

    types: dict[str, int | None] = {}
    for name in dir(llama_cpp):
        if name.startswith("LLAMA_FTYPE_MOSTLY_"):
            key = name.removeprefix("LLAMA_FTYPE_MOSTLY_").lower()
            if key not in NEEDS_IMATRIX and not key.startswith(("tq", "mxfp4", "nvfp4", "q1_", "q2_0")):
                types[key] = getattr(llama_cpp, name)
    types.update(dict.fromkeys(CONVERTER_TYPES))
    return dict(sorted(types.items()))


def export_gguf(
    model_dir: str | os.PathLike[str],
    out_file: str | os.PathLike[str],
    quant: str = "f16",
    llama_cpp_dir: str | os.PathLike[str] | None = None,
    pre_tokenizer: str | None = None,
) -> Path:
    """Convert a model folder (merged model or RUN_DIR) to one GGUF file of type `quant`.

    f32/f16/bf16/q8_0 come straight from the converter; other types (q4_k_m, q5_k_m, q6_k, ...)
    are converted to 16-bit first and quantized by llama.cpp. `pre_tokenizer` is used only when
    the converter does not recognise the tokenizer (a plain GPT-2 byte-level tokenizer, like the
    tiny model's, is recognised here as `gpt-2`).
    """
    _import_llama_cpp()
    model, out = Path(model_dir), Path(out_file)
    kind = _check_quant(quant)
    _check_model_dir(model)
    metadata = gguf_metadata(read_json(model / METADATA_FILE))
    pre = pre_tokenizer or fallback_pre_tokenizer(model)
    with staging_dir(out) as staging:
        converted = staging / "model.gguf"
        outtype = quant.lower() if kind is None else "auto"
        args = [str(model), "--outfile", str(converted), "--outtype", outtype]
        run_converter("convert_hf_to_gguf.py", args, llama_cpp_dir=llama_cpp_dir,
                      metadata=metadata, pre_tokenizer=pre, source="model_dir")
        if kind is not None:
            converted = quantize(converted, staging / "quantized.gguf", kind)
        os.replace(converted, out)
    return out


def export_gguf_lora(
    run_dir: str | os.PathLike[str],
    base_dir: str | os.PathLike[str],
    out_file: str | os.PathLike[str],
    llama_cpp_dir: str | os.PathLike[str] | None = None,
    outtype: str = "f16",
    base_name: str | None = None,
) -> Path:
    """Convert the run's last-stage LoRA adapter to a GGUF LoRA for `Llama(model_path=base.gguf,
    lora_path=out_file)`; `base_dir` is the Hugging Face folder the adapter was trained on."""
    _import_llama_cpp()
    run, base, out = Path(run_dir), Path(base_dir), Path(out_file)
    if outtype not in CONVERTER_TYPES:
        raise ValueError(f"`outtype` is {outtype!r}; a GGUF LoRA can be {', '.join(CONVERTER_TYPES)}.")
    stage = last_stage(run)
    if not is_lora(stage):
        raise ValueError(
            f"`run_dir` {str(run)!r} was trained with full fine-tuning (no adapter_config.json in "
            f"{stage}); export its model with `ma-train export gguf {run} --out FILE.gguf`."
        )
    _check_model_dir(base, source="base")
    recorded = run_metadata(run, stage)
    if base_name:  # not the training machine's path
        recorded["base_model"] = base_name
    metadata = gguf_metadata(recorded)
    with staging_dir(out) as staging:
        converted = staging / "adapter.gguf"
        args = [str(stage), "--base", str(base), "--outfile", str(converted), "--outtype", outtype]
        run_converter("convert_lora_to_gguf.py", args, llama_cpp_dir=llama_cpp_dir,
                      metadata=metadata, source="base")
        os.replace(converted, out)
    return out


def quantize(source: Path, dest: Path, ftype: int) -> Path:
    """Quantize GGUF `source` into `dest` with llama.cpp (key/values, ours included, are kept)."""
    from metaaligner_chain.models.gguf_merge import quantize_gguf

    try:
        return quantize_gguf(source, dest, ftype)
    except RuntimeError as exc:
        raise ConversionError(str(exc)) from exc


def gguf_metadata(metadata: dict[str, Any]) -> dict[str, str]:
    """Our GGUF key/values (`metaaligner.<key>`, strings; objectives comma-joined)."""
    found = {}
    for key in GGUF_KEYS:
        value = metadata.get(key)
        if isinstance(value, (list, tuple)):
            value = ",".join(str(item) for item in value)
        if value not in (None, ""):
            found[GGUF_PREFIX + key] = str(value)
    return found


def fallback_pre_tokenizer(model: Path) -> str | None:
    """`gpt-2` when tokenizer.json pre-tokenizes exactly like GPT-2 (byte-level, regex, no prefix space)."""
    tokenizer = read_json(model / "tokenizer.json")
    pre = tokenizer.get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not pre.get("add_prefix_space"):
        return "gpt-2"
    return None


def _check_quant(quant: str) -> int | None:
    types = quant_types()
    key = quant.lower()
    if key not in types:
        hint = " (it needs an importance matrix, which this exporter does not compute)" if key in NEEDS_IMATRIX else ""
        raise ValueError(f"`quant` is {quant!r}{hint}; known types: {', '.join(types)}.")
    return types[key]


def _check_model_dir(model: Path, source: str = "model_dir") -> None:
    config = model / "config.json"
    if not config.is_file():
        raise FileNotFoundError(
            f"`{source}` {str(model)!r} has no config.json; pass a Hugging Face model folder "
            "(a RUN_DIR, a folder from `ma-train merge`, or a base model)."
        )


def _import_llama_cpp() -> None:
    try:
        import llama_cpp  # noqa: F401
    except ImportError as err:
        raise ImportError(
            'GGUF export needs llama-cpp-python (its quantizer, and the converter of the same '
            'version): `pip install "metaaligner-chain[gguf]"`.'
        ) from err
