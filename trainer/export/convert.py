"""llama.cpp's own Hugging Face → GGUF converters, matched to the installed llama-cpp-python, run as is.

`converter_dir()` finds `convert_hf_to_gguf.py`, `convert_lora_to_gguf.py` and the `gguf-py/` they
ship with: from `--llama-cpp-dir`, or from a cache filled once (`fetch_converter`) from the
llama-cpp-python source distribution of the *installed* version, so converter and runtime agree.
`run_converter()` runs one of them in a subprocess with that gguf-py first on the path, adding
our `metaaligner.*` key/values to the file it writes. Nothing here converts tensors by hand.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from metaaligner_chain.models.cache import cached_dir, default_cache_root

CONVERTERS = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py")
#: A local llama-cpp-python sdist (.tar.gz) to fill the cache from instead of downloading it.
SDIST_ENV = "METAALIGNER_LLAMA_CPP_SDIST"
#: Set to 1 to forbid downloading the sdist (the cache or `--llama-cpp-dir` must then have it).
OFFLINE_ENV = "METAALIGNER_OFFLINE"
#: What is extracted from `vendor/llama.cpp/` of the sdist: the converters, the model classes and
#: gguf-py they import, and the data files they read (chat templates, two built-in vocabularies).
_MEMBERS = (
    *CONVERTERS,
    "LICENSE",
    "conversion/",
    "gguf-py/",
    "requirements/",
    "models/templates/",
    "models/ggml-vocab-gpt-neox.gguf",
    "models/ggml-vocab-llama-spm.gguf",
)
_VENDOR = re.compile(r"^[^/]+/vendor/llama\.cpp/(.+)$")
_PACKAGE = "llama-cpp-python"
_INSTALL = 'pip install "metaaligner-chain[gguf]"'


class ConversionError(RuntimeError):
    """llama.cpp's converter or quantizer failed; the message carries its last log lines."""


def llama_cpp_version() -> str:
    """The installed llama-cpp-python version (the converter must come from the same one)."""
    try:
        return importlib.metadata.version(_PACKAGE)
    except importlib.metadata.PackageNotFoundError as err:
        raise ImportError(
            f"GGUF export needs llama-cpp-python (its converter and quantizer): `{_INSTALL}`."
        ) from err


def cached_converter_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the converter of the installed version lives in the cache (it may not exist yet)."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()
    return root / f"llama.cpp-{llama_cpp_version()}"


def converter_dir(llama_cpp_dir: str | os.PathLike[str] | None = None) -> Path:
    """A folder with both converters and `gguf-py/`: `llama_cpp_dir` if given, else the cache.

    `llama_cpp_dir` may be a llama.cpp checkout or an unpacked llama-cpp-python sdist (its
    `vendor/llama.cpp/` is used). The cache is filled on first use (see `fetch_converter`).
    """
    if llama_cpp_dir is not None:
        folder = Path(llama_cpp_dir).expanduser()
        for candidate in (folder, folder / "vendor" / "llama.cpp"):
            if _complete(candidate):
                return candidate
        raise FileNotFoundError(
            f"`llama_cpp_dir` {str(llama_cpp_dir)!r} has no {' / '.join(CONVERTERS)} with a "
            "gguf-py/ folder next to them. Pass a llama.cpp checkout or an unpacked "
            f"llama-cpp-python sdist (ideally version {llama_cpp_version()}, the installed one)."
        )
    target = cached_converter_dir()
    return target if _complete(target) else fetch_converter()


def fetch_converter(
    sdist: str | os.PathLike[str] | None = None, cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """Fill the cache with the converter of the installed llama-cpp-python; return its folder.

    The sdist comes from `sdist`, else `$METAALIGNER_LLAMA_CPP_SDIST`, else `pip download` (which
    honours pip's own settings: `PIP_FIND_LINKS`, `PIP_INDEX_URL`, ...); `$METAALIGNER_OFFLINE=1`
    forbids the download. Only the converter's files are extracted, into a temporary folder that
    is renamed into place, so an interrupted fetch leaves no half-filled cache. A filled cache is
    reused as is.
    """
    version = llama_cpp_version()
    target = cached_converter_dir(cache_dir)

    def build(staging: Path) -> None:
        with tempfile.TemporaryDirectory(prefix=".sdist-", dir=target.parent) as download:
            source = sdist or os.environ.get(SDIST_ENV) or _download_sdist(version, Path(download), target)
            _extract(Path(source), staging)
        if not _complete(staging):
            raise FileNotFoundError(
                f"the sdist {str(source)!r} has no vendor/llama.cpp/{CONVERTERS[0]}; pass the "
                f"llama-cpp-python {version} source distribution (.tar.gz)."
            )

    target.parent.mkdir(parents=True, exist_ok=True)
    return cached_dir(target, build, _complete)


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in CONVERTERS) and (folder / "gguf-py" / "gguf").is_dir()


def _download_sdist(version: str, dest: Path, target: Path) -> Path:
    how = (
        f"Either run `ma-train export fetch-converter` once while the package index is reachable "
        f"(it fills {target}), pass `--sdist llama_cpp_python-{version}.tar.gz` "
        f"to it (or set ${SDIST_ENV}), or pass `--llama-cpp-dir` with an unpacked "
        f"llama-cpp-python {version} sdist or a llama.cpp checkout."
    )
    if os.environ.get(OFFLINE_ENV, "").strip() not in ("", "0"):
        raise FileNotFoundError(
            f"llama.cpp's converter for llama-cpp-python {version} is not cached and "
            f"${OFFLINE_ENV} forbids downloading it. {how}"
        )
    command = [sys.executable, "-m", "pip", "download", f"{_PACKAGE}=={version}", "--no-deps",
               "--no-binary", ":all:", "--quiet", "-d", str(dest)]
    result = subprocess.run(command, capture_output=True, text=True)
    found = sorted(dest.glob("*.tar.gz")) if dest.is_dir() else []
    if result.returncode != 0 or not found:
        raise FileNotFoundError(
            f"could not download the llama-cpp-python {version} sdist to get llama.cpp's "
            f"converter (pip said: {' '.join(_tail(result.stderr or result.stdout, 3).split())}). {how}"
        )
    return found[0]


def _extract(sdist: Path, dest: Path) -> None:
    """Extract the converter's files from `vendor/llama.cpp/` of the sdist into `dest`."""
    if not sdist.is_file():
        raise FileNotFoundError(f"`sdist` {str(sdist)!r} does not exist; pass a .tar.gz file.")
    with tarfile.open(sdist, "r:*") as tar:
        members = []
        for member in tar:
            match = _VENDOR.match(member.name)
            if match and (member.isfile() or member.isdir()) and match.group(1).startswith(_MEMBERS):
                member.name = match.group(1)
                members.append(member)
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(dest, members=members, **kwargs)


# --- running a converter ---------------------------------------------------------------------

#: Runs a converter script as `__main__` with its folder and gguf-py first on the path, after two
#: additions: our key/values are added to every GGUF it writes, and, when asked, a BPE
#: pre-tokenizer the converter does not recognise by hash is given by name.
_RUNNER = """
import json, os, runpy, sys
script = os.path.abspath(sys.argv[1])
folder = os.path.dirname(script)
sys.path[:0] = [folder, os.path.join(folder, "gguf-py")]
sys.argv = sys.argv[1:]
import gguf
extra = json.loads(os.environ["METAALIGNER_GGUF_KV"])
write_header = gguf.GGUFWriter.write_header_to_file
def write_header_with_metadata(self, *args, **kwargs):
    for key, value in extra.items():
        self.add_string(key, value)
    return write_header(self, *args, **kwargs)
gguf.GGUFWriter.write_header_to_file = write_header_with_metadata
pre = os.environ.get("METAALIGNER_PRE_TOKENIZER")
if pre:
    from conversion.base import TextModel
    by_hash = TextModel.get_vocab_base_pre
    def by_hash_or_name(self, tokenizer):
        try:
            return by_hash(self, tokenizer)
        except NotImplementedError:
            return pre
    TextModel.get_vocab_base_pre = by_hash_or_name
runpy.run_path(script, run_name="__main__")
"""


def run_converter(
    script: str,
    args: Sequence[str],
    *,
    llama_cpp_dir: str | os.PathLike[str] | None = None,
    metadata: Mapping[str, str] | None = None,
    pre_tokenizer: str | None = None,
    source: str = "model_dir",
) -> None:
    """Run `script` (one of CONVERTERS) with `args`; raise ConversionError with its log on failure.

    `metadata` is written as string key/values into the GGUF; `pre_tokenizer` names the llama.cpp
    BPE pre-tokenizer to use when the converter does not recognise the tokenizer's hash.
    `source` names the argument the input came from, for error messages.
    """
    folder = converter_dir(llama_cpp_dir)
    env = {
        **os.environ,
        "METAALIGNER_GGUF_KV": json.dumps(dict(metadata or {})),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(folder / "gguf-py"), os.environ.get("PYTHONPATH")])),
    }
    env.pop("NO_LOCAL_GGUF", None)
    if pre_tokenizer:
        env["METAALIGNER_PRE_TOKENIZER"] = pre_tokenizer
    command = [sys.executable, "-c", _RUNNER, str(folder / script), *args]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode == 0:
        return
    log = result.stderr + result.stdout
    unsupported = re.search(r"Model (\S+) is not supported", log)
    if unsupported:
        raise ValueError(
            f"`{source}` has architecture {unsupported.group(1)!r}, which llama.cpp's converter "
            f"(llama-cpp-python {llama_cpp_version()}) does not support. Export a model of a "
            "supported architecture (llama, qwen2, gemma, ...; list them with `python "
            f"{folder / CONVERTERS[0]} --print-supported-models`), or upgrade llama-cpp-python."
        )
    if "BPE pre-tokenizer was not recognized" in log:
        raise ValueError(
            f"llama.cpp's converter does not recognise the BPE pre-tokenizer of `{source}`'s "
            "tokenizer. If you know which llama.cpp pre-tokenizer it matches, pass it with "
            "`--pre-tokenizer NAME` (e.g. gpt-2 for a plain GPT-2 byte-level tokenizer, llama-bpe, "
            "qwen2); otherwise export from a base model whose tokenizer llama.cpp knows."
        )
    raise ConversionError(f"{script} failed (exit {result.returncode}):\n{_tail(log, 15)}")


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.strip().splitlines()[-lines:]) or "(no output)"
