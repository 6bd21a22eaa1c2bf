"""`ma-train merge` and `ma-train export gguf | gguf-lora | adapter | fetch-converter`.

The command-line face of `trainer.export` (merge, gguf, package, convert). Imports nothing heavy: torch,
transformers and llama-cpp-python load when a command runs, so `ma-train --help` stays fast.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from trainer.config import ExportConfig, GgufConfig, GgufLoraConfig, MergeConfig
from trainer.console import console, friendly
from trainer.options import command

export_app = typer.Typer(help="Export a trained aligner to GGUF (llama.cpp's own converter).",
                         no_args_is_help=True)


def _written(make: Callable[..., Path], *args: Any, **kwargs: Any) -> Path:
    """`make(*args, **kwargs)`, then the path it wrote and how long it took, on the console."""
    start = time.time()
    out = make(*args, **kwargs)
    console.print(f"wrote {out} ({time.time() - start:.1f}s)")
    return out


def run_export(config: ExportConfig) -> Path:
    """Package a LoRA run as a shippable adapter folder (`trainer.export.package`)."""
    from trainer.export.package import export_adapter

    return _written(export_adapter, config.run, config.adapter_dir, config.base, config.base_name,
                    config.recipe, config.keep_margin, config.keep_margin_per_objective)


def run_merge(config: MergeConfig) -> Path:
    """A run as a standalone model folder (`trainer.export.merge`)."""
    from trainer.export.merge import merge

    return _written(merge, config.run, config.out, base=config.base)


def run_gguf(config: GgufConfig) -> Path:
    """A model folder as GGUF (`trainer.export.gguf`)."""
    from trainer.export.gguf import export_gguf

    return _written(export_gguf, config.model, config.out, config.quant, llama_cpp_dir=config.llama_cpp_dir,
                    pre_tokenizer=config.pre_tokenizer)


def run_gguf_lora(config: GgufLoraConfig) -> Path:
    """A LoRA run's adapter as a GGUF LoRA (`trainer.export.gguf`)."""
    from trainer.export.gguf import export_gguf_lora

    return _written(export_gguf_lora, config.run, config.base, config.out, llama_cpp_dir=config.llama_cpp_dir,
                    outtype=config.outtype)


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
export_app.command("gguf")(friendly(command(GgufConfig, None, "export gguf", run_gguf)))
export_app.command("gguf-lora")(friendly(command(GgufLoraConfig, None, "export gguf-lora", run_gguf_lora)))
merge_command = friendly(command(MergeConfig, None, "merge", run_merge))
