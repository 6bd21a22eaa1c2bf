"""A GGUF found (locally or in a hub repo), checked before llama.cpp reads it (an adapter passed as
`model`, a vocabulary without byte tokens, a LoRA for another architecture), and loaded into a
llama-cpp-python `Llama` whose CPU batches give the tokens of one-at-a-time decoding.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from metaaligner_chain.models.gguf_header import BYTE_TOKENS, read_gguf_header
from metaaligner_chain.models.hub import hub_load_options

#: Context allocated at load when `n_ctx` is not given; it grows on demand up to the trained one.
INITIAL_CONTEXT = 2048
#: llama.cpp rounds every context up to a multiple of this; llama-cpp-python does not (it sizes its
#: token buffer by the requested value), so contexts are rounded here before loading.
CONTEXT_STEP = 256
#: Largest CPU batch (prompt chunk or draft check) whose results match one-token decoding.
EXACT_BATCH = 32
#: Default thread cap: a small aligner gains little from more cores.
MAX_DEFAULT_THREADS = 8
_INSTALL = 'pip install "metaaligner-chain[gguf]"'


def load_llama(
    path: Path, lora_path: Path | None, n_ctx: int, options: dict[str, Any], *, model: str,
    architecture: str,
) -> Any:
    """A `Llama` for `path` (with the GGUF LoRA `lora_path`) and a context of `n_ctx` tokens
    rounded up to `CONTEXT_STEP`; `model` and `architecture` name it in errors."""
    from llama_cpp import Llama

    try:
        llama = Llama(
            model_path=str(path),
            lora_path=None if lora_path is None else str(lora_path),
            n_ctx=-(-n_ctx // CONTEXT_STEP) * CONTEXT_STEP,
            n_threads_batch=options["n_threads"],
            # With flash attention and batches under 64 tokens, llama.cpp's CPU kernels give
            # a token the same logits whatever else shares its batch (otherwise they drift by
            # up to ~0.9 on SmolLM2): drafted decoding, prefix snapshots and the previous
            # call's reused prefix then all give exactly the tokens of one-at-a-time decoding.
            flash_attn=True,
            n_batch=EXACT_BATCH if not options["n_gpu_layers"] else 512,
            **options,
        )
    except (ValueError, RuntimeError) as err:
        raise ValueError(
            f"llama.cpp could not load `model` {str(path)!r} (GGUF architecture "
            f"{architecture!r}). Either this llama.cpp build ({llama_version()}) does "
            f"not support architecture {architecture!r} (upgrade llama-cpp-python, or use "
            "backend='transformers' with the original checkpoint), or the file is damaged "
            "(download or export it again)."
        ) from err
    # llama-cpp-python checks the adapter pointer with `is None`, so a LoRA that llama.cpp
    # rejects (a NULL pointer object) is silently skipped; check it here.
    if lora_path is not None and not getattr(llama, "_lora_adapter", None):
        llama.close()
        raise ValueError(
            f"llama.cpp could not apply `lora_path` {str(lora_path)!r} to "
            f"{model!r}: its tensor names or shapes do not match the model's. Pass the "
            "adapter converted from a LoRA trained on this base model."
        )
    return llama


def check_model(path: Path, model: str) -> dict[str, Any]:
    """The GGUF header of `model` (at `path`), once it is known to be a model llama.cpp can read."""
    header = read_gguf_header(path, field="model")
    if header.get("general.type") == "adapter":
        raise ValueError(
            f"`model` {model!r} is a LoRA adapter, not a model. Pass its base model as "
            "`model` and this file as `lora_path`."
        )
    check_vocabulary(header, path)
    return header


def locate(model: str | os.PathLike[str], hub_file: str | None) -> Path:
    """The local GGUF file for `model`, downloading `hub_file` from hub repo `model` if asked."""
    path = Path(model).expanduser()
    if hub_file is None or path.exists():
        if path.is_dir():
            raise IsADirectoryError(
                f"`model` {str(model)!r} is a directory. Pass the .gguf file inside it, or a "
                "hub repo id with `hub_file`."
            )
        if not path.is_file():
            raise FileNotFoundError(
                f"`model` {str(model)!r} does not exist. Pass the path of a .gguf file, or a hub "
                "repo id with `hub_file='<name>.gguf'`."
            )
        return path
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as err:
        raise ImportError(
            "loading `model` from a hub repo needs huggingface-hub: `pip install huggingface-hub`."
        ) from err
    options = hub_load_options(str(model), hub_file)  # at once, not after a minute of retries
    try:
        return Path(hf_hub_download(repo_id=str(model), filename=hub_file, **options))
    except Exception as err:
        raise OSError(
            f"could not fetch `hub_file` {hub_file!r} from hub repo `model` {str(model)!r} "
            f"({err}). Without hub access, copy the file here and pass its local path as `model`."
        ) from err


def check_lora(lora_path: str | os.PathLike[str], architecture: str) -> Path:
    path = Path(lora_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"`lora_path` {str(lora_path)!r} does not exist. Pass a GGUF LoRA file."
        )
    header = read_gguf_header(path, field="lora_path")
    if header.get("general.type") != "adapter" or header.get("adapter.type") != "lora":
        raise ValueError(
            f"`lora_path` {str(lora_path)!r} is not a GGUF LoRA adapter (general.type="
            f"{header.get('general.type')!r}, adapter.type={header.get('adapter.type')!r}). "
            "Convert a peft adapter with llama.cpp's convert_lora_to_gguf.py."
        )
    if header["general.architecture"] != architecture:
        raise ValueError(
            f"`lora_path` {str(lora_path)!r} is for architecture "
            f"{header['general.architecture']!r} but the model is {architecture!r}. Pass the "
            "adapter trained on this base model."
        )
    return path


def check_vocabulary(header: dict[str, Any], path: Path) -> None:
    # llama.cpp's SentencePiece tokenizer spells unknown characters with <0xNN> byte tokens and
    # aborts the whole process (an uncaught C++ exception) when one is missing.
    if header.get("tokenizer.ggml.model") == "llama" and header.get(BYTE_TOKENS, 256) < 256:
        raise ValueError(
            f"`model` {str(path)!r} has a SentencePiece vocabulary without the 256 byte tokens "
            f"(<0x00>..<0xFF>; found {header[BYTE_TOKENS]}); llama.cpp would abort on the first "
            "character outside the vocabulary. Convert the model again with its full tokenizer."
        )


def default_threads() -> int:
    """CPU threads a backend uses when `n_threads` is not given: the CPUs this process may use,
    at most `MAX_DEFAULT_THREADS`."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(available or 1, MAX_DEFAULT_THREADS))


def import_llama_cpp():
    try:
        import llama_cpp
    except ImportError as err:
        raise ImportError(f"the llama.cpp backend needs llama-cpp-python: `{_INSTALL}`.") from err
    return llama_cpp


def llama_version() -> str:
    return f"llama-cpp-python {getattr(import_llama_cpp(), '__version__', '?')}"
