"""A transformers model loaded for the engine: from a folder, a .gguf file (dequantised) or a hub id
checked at once; on the best device found, in its dtype (bf16 on CUDA when supported, else fp32);
a peft adapter merged into its weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from metaaligner_chain.models.hub import hub_load_options

_EXTRA = 'pip install "metaaligner-chain[hf]"'


def import_torch_transformers():
    try:
        import torch
        import transformers
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"the transformers backend needs torch and transformers: {_EXTRA}") from exc
    return torch, transformers


def merge_adapter(lm: Any, adapter: Path) -> Any:
    """`lm` with the peft LoRA adapter folder `adapter` merged into its weights (no per-token cost)."""
    if not (adapter / "adapter_config.json").is_file():
        raise ValueError(
            f"`adapter` {str(adapter)!r} is not a peft adapter folder (no adapter_config.json). "
            "Pass a LoRA folder saved by peft, e.g. RUN_DIR/stages/preference of an `ma-train` run."
        )
    try:
        from peft import PeftModel
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"`adapter` needs peft: {_EXTRA}") from exc
    return PeftModel.from_pretrained(lm, str(adapter)).merge_and_unload()


def pick_device(torch: Any, device: str | None) -> str:
    """`device` if given; else CUDA, then Apple MPS, then CPU."""
    if device:
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(torch: Any, dtype: str | None, device: str) -> Any:
    """bf16 on CUDA when supported, fp32 elsewhere, unless `dtype` names one."""
    if dtype in (None, "auto"):
        if device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    choices = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16,
               "fp16": torch.float16, "float32": torch.float32, "fp32": torch.float32}
    if dtype not in choices:
        raise ValueError(f"`dtype` is {dtype!r}; choose one of auto, {', '.join(choices)}.")
    return choices[dtype]


def load_model(
    model: str, dtype: Any, device: str, adapter: Path | None = None, *,
    trust_remote_code: bool = False,
) -> tuple[Any, Any]:
    """The tokenizer and causal LM of `model` (a folder, a .gguf file, or a hub id checked at
    once) on `device` in `dtype`, with the peft `adapter` merged into its weights when given."""
    _, transformers = import_torch_transformers()
    path = Path(model).expanduser()
    source, extra = str(path), {}
    if path.is_file() and path.suffix == ".gguf":
        source, extra = str(path.parent), {"gguf_file": path.name}
    elif not path.exists():  # a hub id: checked at once, not retried for a minute
        source, extra = model, hub_load_options(model)
    elif path.is_dir() and not (path / "config.json").is_file():
        raise OSError(
            f"could not load aligner model {model!r}: it is a folder without a model in "
            "it (no config.json). Pass a folder saved by `save_pretrained` (a finished "
            "`ma-train` run directory is one), a .gguf file, or a hub id."
        )
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            source, trust_remote_code=trust_remote_code, **extra
        )
        lm = transformers.AutoModelForCausalLM.from_pretrained(
            source, dtype=dtype, trust_remote_code=trust_remote_code, **extra
        ).to(device)
    except (OSError, ValueError) as exc:  # missing files, no hub, not a model directory
        raise OSError(
            f"could not load aligner model {model!r} with transformers: {exc}. Pass a "
            "local model directory, a .gguf file, or a hub id while the hub is reachable."
        ) from exc
    if adapter is not None:
        lm = merge_adapter(lm, adapter)
    return tokenizer, lm
