"""`ma-train merge` and `ma-train export gguf | gguf-lora | adapter | fetch-converter`.

The command-line face of `trainer.export` (merge, gguf, package, convert). Imports nothing heavy: torch,
transformers and llama-cpp-python load when a command runs, so `ma-train --help` stays fast.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from trainer.config import ExportConfig
from trainer.console import console, friendly
from trainer.options import command

export_app = typer.Typer(help="Export a trained aligner to GGUF (llama.cpp's own converter).",
                         no_args_is_help=True)

LlamaCppDir = Annotated[Optional[Path], typer.Option(
    help="A llama.cpp checkout or unpacked llama-cpp-python sdist holding the converters "
    "(default: the cache filled by `ma-train export fetch-converter`).")]


def _done(path: Path, start: float) -> None:
    console.print(f"wrote {path} ({time.time() - start:.1f}s)")


def run_export(config: ExportConfig) -> Path:
    """Package a LoRA run as a shippable adapter folder (`trainer.export.package`)."""
    from trainer.export.package import export_adapter

    start = time.time()
    out = export_adapter(config.run, config.adapter_dir, config.base, config.base_name, config.recipe)
    _done(out, start)
    return out


@friendly
def merge_command(
    run_dir: Annotated[Path, typer.Argument(help="RUN_DIR from `ma-train train`.")],
    out: Annotated[Path, typer.Option(help="MERGED_DIR to write (replaced if it is an earlier merge).")],
    base: Annotated[Optional[str], typer.Option(
        help="Base the LoRA was trained on (default: the run's recorded base_model).")] = None,
) -> None:
    """Merge a run's LoRA adapter into its base (or copy a full run) as a standalone model folder."""
    from trainer.export.merge import merge

    start = time.time()
    _done(merge(run_dir, out, base=base), start)


@export_app.command("gguf")
@friendly
def gguf_command(
    model_dir: Annotated[Path, typer.Argument(help="Model folder: MERGED_DIR, RUN_DIR or a base.")],
    out: Annotated[Path, typer.Option(help="FILE.gguf to write.")],
    quant: Annotated[str, typer.Option(help="f32, f16, bf16, q8_0 (converter) or q4_k_m, q5_k_m, "
                                       "q6_k, ... (llama.cpp quantizer).")] = "f16",
    llama_cpp_dir: LlamaCppDir = None,
    pre_tokenizer: Annotated[Optional[str], typer.Option(
        help="llama.cpp BPE pre-tokenizer name for a tokenizer the converter does not know.")] = None,
) -> None:
    """Convert a model folder to GGUF, with our prompt format and objectives in its metadata."""
    from trainer.export.gguf import export_gguf

    start = time.time()
    _done(export_gguf(model_dir, out, quant, llama_cpp_dir=llama_cpp_dir, pre_tokenizer=pre_tokenizer), start)


@export_app.command("gguf-lora")
@friendly
def gguf_lora_command(
    run_dir: Annotated[Path, typer.Argument(help="RUN_DIR of a LoRA run.")],
    base: Annotated[Path, typer.Option(help="BASE_DIR (Hugging Face folder) the adapter was trained on.")],
    out: Annotated[Path, typer.Option(help="ADAPTER.gguf to write.")],
    outtype: Annotated[str, typer.Option(help="f32, f16, bf16 or q8_0.")] = "f16",
    llama_cpp_dir: LlamaCppDir = None,
) -> None:
    """Convert the run's LoRA adapter to a GGUF LoRA: Llama(model_path=BASE.gguf, lora_path=OUT)."""
    from trainer.export.gguf import export_gguf_lora

    start = time.time()
    _done(export_gguf_lora(run_dir, base, out, llama_cpp_dir=llama_cpp_dir, outtype=outtype), start)


@export_app.command("fetch-converter")
@friendly
def fetch_converter_command(
    sdist: Annotated[Optional[Path], typer.Option(
        help="A local llama-cpp-python sdist (.tar.gz) of the installed version; default: pip download.")] = None,
) -> None:
    """Cache llama.cpp's converter for the installed llama-cpp-python (once, while online)."""
    from trainer.export.convert import fetch_converter

    console.print(f"llama.cpp converter ready: {fetch_converter(sdist)}")


export_app.command("adapter")(friendly(command(ExportConfig, "export", "export adapter", run_export)))
