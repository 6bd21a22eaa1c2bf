"""Merge and export: a trained run → a standalone model folder → a GGUF file (full model or LoRA).

`merge` folds the run's LoRA adapter into its base (or copies the last full-weight stage);
`export_gguf` converts a model folder with llama.cpp's own converter (`trainer.convert`) and,
for k-quants and the like, quantizes with llama-cpp-python's `llama_model_quantize`;
`export_gguf_lora` converts the adapter alone. Each GGUF carries our `metaaligner.*` key/values
(prompt format, objectives, base model). Outputs appear whole or not at all.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from metaaligner_chain.models.metadata import GGUF_KEYS, GGUF_PREFIX, METADATA_FILE
from trainer.config import STAGES
from trainer.convert import ConversionError, run_converter
from trainer.stages import DONE_FILE

#: Types llama.cpp's converter writes itself (`--outtype`).
CONVERTER_TYPES = ("f32", "f16", "bf16", "q8_0")
#: llama.cpp types that need an importance matrix, which this exporter does not compute.
NEEDS_IMATRIX = ("iq1_s", "iq1_m", "iq2_xxs", "iq2_xs", "iq2_s", "q2_k_s")


# --- merge -----------------------------------------------------------------------------------


def merge(run_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], base: str | None = None) -> Path:
    """Write the run's final model as a standalone folder: safetensors, tokenizer, generation config.

    A LoRA run's last-stage adapter is merged into its base (`base`, default: the run's recorded
    `base_model`); a full run's last stage is copied. `metaaligner.json` is kept (plus
    `merged_from`). `out_dir` is replaced as a whole, so running twice gives the same folder.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run, out = Path(run_dir), Path(out_dir)
    stage = last_stage(run)
    metadata = run_metadata(run, stage)
    _check_out_dir(out, run)
    with _staging_dir(out) as staging:
        if is_lora(stage):
            from peft import PeftModel

            model, dtype = _load_base(base or metadata.get("base_model"), run)
            model = PeftModel.from_pretrained(model, str(stage)).merge_and_unload().to(dtype)
        else:
            model = AutoModelForCausalLM.from_pretrained(str(stage), dtype="auto")
        model.save_pretrained(str(staging), safe_serialization=True)
        AutoTokenizer.from_pretrained(str(stage)).save_pretrained(str(staging))
        metadata["merged_from"] = str(run)
        (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
        _replace_dir(staging, out)
    return out


def last_stage(run: Path) -> Path:
    """The latest finished stage folder of RUN_DIR (its adapter or weights are the run's result)."""
    for stage in reversed(STAGES):
        folder = run / "stages" / stage
        if (folder / DONE_FILE).is_file():
            return folder
    raise FileNotFoundError(
        f"`run_dir` {str(run)!r} has no finished stage (stages/<stage>/{DONE_FILE}); pass the "
        "RUN_DIR written by `ma-train train --out RUN_DIR`, or finish it with `--resume`."
    )


def is_lora(stage: Path) -> bool:
    return (stage / "adapter_config.json").is_file()


def run_metadata(run: Path, stage: Path) -> dict[str, Any]:
    """The run's `metaaligner.json` (from RUN_DIR, else from the stage folder)."""
    for folder in (run, stage):
        if (folder / METADATA_FILE).is_file():
            return json.loads((folder / METADATA_FILE).read_text())
    return {}


def _load_base(base: str | None, run: Path) -> tuple[Any, Any]:
    """The base model loaded in float32 (to merge exactly) and the dtype it was saved in."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if not base:
        raise ValueError(
            f"`run_dir` {str(run)!r} does not record its `base_model`; pass the base the "
            "adapter was trained on with `--base BASE_DIR`."
        )
    source = str(Path(base).expanduser())
    try:
        saved = AutoConfig.from_pretrained(source).dtype
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    except (OSError, ValueError) as err:  # missing folder, or not a valid hub id either
        raise FileNotFoundError(
            f"could not load the run's base model {base!r} from {Path.cwd()} (a relative "
            "`base_model` is recorded relative to where training ran). Pass the base the adapter "
            "was trained on with `--base BASE_DIR`."
        ) from err
    if isinstance(saved, str):
        saved = getattr(torch, saved, None)
    return model, saved if isinstance(saved, torch.dtype) else torch.float32


def _check_out_dir(out: Path, run: Path) -> None:
    resolved, run_resolved = out.resolve(), run.resolve()
    if resolved == run_resolved or run_resolved in resolved.parents or resolved in run_resolved.parents:
        raise ValueError(
            f"`out` {str(out)!r} overlaps `run_dir` {str(run)!r}; pass a separate MERGED_DIR."
        )
    if out.exists() and (not out.is_dir() or any(out.iterdir()) and not (out / METADATA_FILE).is_file()):
        raise ValueError(
            f"`out` {str(out)!r} exists and is not an earlier merge (no {METADATA_FILE}); pass "
            "an empty or new folder."
        )


@contextmanager
def _staging_dir(out: Path):
    """A temporary folder next to `out`, removed on the way out (renamed into place on success)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp's 0o700 would outlive the rename
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _replace_dir(staging: Path, out: Path) -> None:
    old = out.with_name(f".{out.name}-old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)


# --- GGUF ------------------------------------------------------------------------------------


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
    metadata = gguf_metadata(_read_json(model / METADATA_FILE))
    pre = pre_tokenizer or fallback_pre_tokenizer(model)
    with _staging_dir(out) as staging:
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
            f"`run_dir` {str(run)!r} was trained with --full (no adapter_config.json in "
            f"{stage}); export its model with `ma-train export gguf {run} --out FILE.gguf`."
        )
    _check_model_dir(base, source="base")
    metadata = gguf_metadata(run_metadata(run, stage))
    with _staging_dir(out) as staging:
        converted = staging / "adapter.gguf"
        args = [str(stage), "--base", str(base), "--outfile", str(converted), "--outtype", outtype]
        run_converter("convert_lora_to_gguf.py", args, llama_cpp_dir=llama_cpp_dir,
                      metadata=metadata, source="base")
        os.replace(converted, out)
    return out


def export_adapter(
    run_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    base_dir: str | os.PathLike[str] | None = None,
    base_name: str | None = None,
    recipe: str | None = None,
) -> Path:
    """Ship a LoRA run as one folder both backends load: the peft adapter in fp16
    (`adapter=` on transformers), the same adapter as `adapter.gguf` (`lora_path=` on llama.cpp)
    and `metaaligner.json`. `base_name` replaces the training machine's base path in the files."""
    import torch
    from safetensors.torch import load_file, save_file

    run, out = Path(run_dir), Path(out_dir)
    stage = last_stage(run)
    if not is_lora(stage):
        raise ValueError(f"`run` {str(run)!r} was trained with full fine-tuning; it has no adapter "
                         f"to ship. Export its model with `ma-train export gguf {run} --out FILE.gguf`.")
    metadata = run_metadata(run, stage)
    base = Path(base_dir or metadata.get("base_model", ""))
    out.mkdir(parents=True, exist_ok=True)
    export_gguf_lora(run, base, out / "adapter.gguf", outtype="f16")
    weights = load_file(str(stage / "adapter_model.safetensors"))
    save_file({k: v.to(torch.float16) for k, v in weights.items()}, str(out / "adapter_model.safetensors"))
    config = _read_json(stage / "adapter_config.json")
    if base_name:
        config["base_model_name_or_path"] = base_name
        metadata["base_model"] = base_name
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    metadata.pop("init_from", None)
    if recipe:
        metadata["recipe"] = recipe
    (out / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return out


def quantize(source: Path, dest: Path, ftype: int) -> Path:
    """Quantize GGUF `source` into `dest` with llama.cpp (key/values, ours included, are kept)."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    with _quiet():
        status = llama_cpp.llama_model_quantize(str(source).encode(), str(dest).encode(), params)
    if status != 0 or not dest.is_file():
        raise ConversionError(f"llama_model_quantize failed (status {status}) on {source}.")
    return dest


@contextmanager
def _quiet():
    """Silence llama.cpp's per-tensor log on stdout/stderr (its status code reports failure)."""
    try:
        from llama_cpp._utils import suppress_stdout_stderr
    except ImportError:  # a future llama-cpp-python without it: keep the log
        yield
        return
    with suppress_stdout_stderr(disable=False):
        yield


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
    tokenizer = _read_json(model / "tokenizer.json")
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _import_llama_cpp() -> None:
    try:
        import llama_cpp  # noqa: F401
    except ImportError as err:
        raise ImportError(
            'GGUF export needs llama-cpp-python (its quantizer, and the converter of the same '
            'version): `pip install "metaaligner-chain[gguf]"`.'
        ) from err
