"""Fold a GGUF LoRA adapter into its base model's weights: one F16 GGUF, no adapter at run time.

llama.cpp applies a `lora_path` adapter as extra matrix products in every layer on every forward.
For the shipped default aligner (SmolLM2-135M Q4_1 + a rank-64 adapter on all linear layers) the
merge, quantized to Q8_0 as it is served, decodes faster and checks a 16-token draft in about
two thirds of the time of the adapter applied at run time (`benchmarks/bench_default_aligner.py`
measures the served file, the F16 merge, the run-time adapter and the base). The merge is exact up
to F16 rounding:
each base weight is dequantized, the adapter's `scale * B @ A` added (scale = alpha / rank, as
llama.cpp applies it), and the sum stored as F16; 1-D tensors (norms) stay F32.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from metaaligner_chain.models.gguf_header import GGUFTensor, read_gguf_contents

#: Metadata keys of the adapter that the merged model carries (prompt format, objectives).
ADAPTER_KEYS = ("metaaligner.",)
#: Base-model keys written anew: the writer's own architecture field and the file type (F16).
_REWRITTEN = ("general.architecture", "general.file_type")


PathLike = str | os.PathLike[str]
#: Rows dequantized and merged at a time: a few MB of F32 (the 49,152-row token embedding is
#: 113 MB in F32, 57 MB once merged as F16).
_ROWS = 1024


def merge_lora_gguf(base: PathLike, adapter: PathLike, out: PathLike) -> Path:
    """Write `base` with `adapter` folded in to `out` (F16) and return `out`.

    Streamed, so memory stays near one tensor, not the model: the key/values and tensor table are
    written first, then each merged tensor, built `_ROWS` rows at a time from plain file reads.
    """
    from gguf import GGUFValueType, GGUFWriter, LlamaFileType

    fields, tensors = read_gguf_contents(base)
    lora_fields, lora_tensors = read_gguf_contents(adapter)
    alpha = next((v for k, _, _, v in lora_fields if k == "adapter.lora.alpha"), None)
    if alpha is None:
        raise ValueError(f"{adapter} is not a GGUF LoRA adapter (it has no adapter.lora.alpha).")
    factors = {t.name: t for t in lora_tensors}
    unused = {name.rsplit(".", 1)[0] for name in factors} - {t.name for t in tensors}
    if unused:
        raise ValueError(
            f"{adapter} adapts tensors that {base} does not have: {sorted(unused)[:3]}; was it "
            "trained on another base model?"
        )
    writer = GGUFWriter(str(out), next(v for k, _, _, v in fields if k == "general.architecture"))
    kept = [f for f in fields if f[0] not in _REWRITTEN]
    for key, kind, item, value in kept + [f for f in lora_fields if f[0].startswith(ADAPTER_KEYS)]:
        writer.add_key_value(key, value, GGUFValueType(kind),
                             None if item is None else GGUFValueType(item))
    writer.add_file_type(LlamaFileType.MOSTLY_F16)
    for tensor in tensors:
        writer.add_tensor_info(tensor.name, tensor.shape, _merged_type(tensor), _nbytes(tensor))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in tensors:
        a, b = factors.get(f"{tensor.name}.lora_a"), factors.get(f"{tensor.name}.lora_b")
        delta = None if a is None or b is None else (_read(adapter, b), _read(adapter, a), alpha)
        writer.write_tensor_data(_merged(base, tensor, delta))
    writer.close()
    return Path(out)


def _merged_type(tensor: GGUFTensor) -> Any:
    """F16 for matrices, F32 for the rest (norms)."""
    import numpy as np

    return np.dtype(np.float16 if len(tensor.shape) > 1 else np.float32)


def _nbytes(tensor: GGUFTensor) -> int:
    return _merged_type(tensor).itemsize * math.prod(tensor.shape)


def _merged(path: PathLike, tensor: GGUFTensor, delta: tuple | None) -> Any:
    """`tensor` of the GGUF at `path` dequantized (F32), plus `scale * b @ a` when `delta` is
    `(b, a, alpha)` (scale = alpha / rank), in its merged type; built `_ROWS` rows at a time."""
    import numpy as np

    merged = np.empty(tensor.shape, _merged_type(tensor))
    rows = merged.reshape(-1, tensor.shape[-1])  # a view: 1-D tensors are one row
    added = None
    if delta is not None:  # whole: a product over fewer rows may round differently
        b_up, a_down, alpha = delta
        added = (alpha / a_down.shape[0]) * (b_up @ a_down)
    for start in range(0, len(rows), _ROWS):
        chunk = slice(start, min(start + _ROWS, len(rows)))
        weight = _read(path, tensor, chunk)
        if added is not None:
            weight += added[chunk]
        rows[chunk] = weight
    return merged


def _read(path: PathLike, tensor: GGUFTensor, rows: slice | None = None) -> Any:
    """Rows `rows` (all by default) of `tensor` in the GGUF at `path`, dequantized to F32: plain
    file reads of just those rows, so no page of the file stays resident."""
    import numpy as np
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
    from gguf.quants import dequantize

    kind = GGMLQuantizationType(tensor.kind)
    block, block_bytes = GGML_QUANT_SIZES[kind]
    row_bytes = tensor.shape[-1] // block * block_bytes
    rows = rows or slice(0, math.prod(tensor.shape[:-1]))
    count = rows.stop - rows.start
    start = tensor.offset + rows.start * row_bytes
    data = np.fromfile(path, np.uint8, count * row_bytes, offset=start)
    return dequantize(data.reshape(count, row_bytes), kind).astype(np.float32, copy=False)


def quantize_gguf(source: PathLike, dest: PathLike, ftype: int) -> Path:
    """Quantize GGUF `source` into `dest` with llama.cpp's own quantizer (`llama_model_quantize`,
    file type `ftype`, e.g. ``llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0``); key/values, ours included, are
    kept. Raises `RuntimeError` when llama.cpp reports a failure."""
    from contextlib import nullcontext

    import llama_cpp

    try:
        from llama_cpp._utils import suppress_stdout_stderr  # its per-tensor log, silenced
        quiet = suppress_stdout_stderr(disable=False)
    except ImportError:  # a future llama-cpp-python without it: keep the log
        quiet = nullcontext()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    with quiet:
        status = llama_cpp.llama_model_quantize(str(source).encode(), str(dest).encode(), params)
    if status != 0 or not Path(dest).is_file():
        raise RuntimeError(f"llama_model_quantize failed (status {status}) on {source}.")
    return Path(dest)
