"""Fold a GGUF LoRA adapter into its base model's weights: one F16 GGUF, no adapter at run time.

llama.cpp applies a `lora_path` adapter as extra matrix products in every layer on every forward.
For the shipped default aligner (SmolLM2-135M Q4_1 + a rank-8 adapter on all linear layers) the
merged F16 model costs about the same per decoding step but checks a 16-token draft in about two
thirds of the time (llama.cpp multiplies F16 batches with its tiled kernels, Q4_1 ones row by
row): `benchmarks/bench_default_aligner.py` measures both. The merge is exact up to F16 rounding:
each base weight is dequantized, the adapter's `scale * B @ A` added (scale = alpha / rank, as
llama.cpp applies it), and the sum stored as F16; 1-D tensors (norms) stay F32.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Metadata keys of the adapter that the merged model carries (prompt format, objectives).
ADAPTER_KEYS = ("metaaligner.",)
#: Base-model keys written anew: the writer's own architecture field and the file type (F16).
_REWRITTEN = ("general.architecture", "general.file_type")


PathLike = str | os.PathLike[str]


def merge_lora_gguf(base: PathLike, adapter: PathLike, out: PathLike) -> Path:
    """Write `base` with `adapter` folded in to `out` (F16) and return `out`."""
    import numpy as np
    from gguf import GGUFReader, GGUFValueType, GGUFWriter, LlamaFileType
    from gguf.quants import dequantize

    model, lora = GGUFReader(str(base)), GGUFReader(str(adapter))
    if "adapter.lora.alpha" not in lora.fields:
        raise ValueError(f"{adapter} is not a GGUF LoRA adapter (it has no adapter.lora.alpha).")
    alpha = float(lora.fields["adapter.lora.alpha"].contents())
    factors = {t.name: t for t in lora.tensors}
    writer = GGUFWriter(str(out), model.fields["general.architecture"].contents())
    for source, keep in ((model, lambda k: True), (lora, lambda k: k.startswith(ADAPTER_KEYS))):
        for key, field in source.fields.items():
            if key.startswith("GGUF.") or key in _REWRITTEN or not keep(key):
                continue
            kind = field.types[0]
            item = field.types[-1] if kind == GGUFValueType.ARRAY else None
            writer.add_key_value(key, field.contents(), kind, item)
    writer.add_file_type(LlamaFileType.MOSTLY_F16)
    merged = set()
    for tensor in model.tensors:
        weight = dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        a, b = factors.get(f"{tensor.name}.lora_a"), factors.get(f"{tensor.name}.lora_b")
        if a is not None and b is not None:
            b_up, a_down = np.asarray(b.data, np.float32), np.asarray(a.data, np.float32)
            weight += (alpha / a_down.shape[0]) * (b_up @ a_down)
            merged.add(tensor.name)
        writer.add_tensor(tensor.name, weight.astype(np.float16 if weight.ndim > 1 else np.float32))
    unused = {name.rsplit(".", 1)[0] for name in factors} - merged
    if unused:
        raise ValueError(
            f"{adapter} adapts tensors that {base} does not have: {sorted(unused)[:3]}; was it "
            "trained on another base model?"
        )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(out)


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
