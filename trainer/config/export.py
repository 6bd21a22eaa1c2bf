"""Settings of the verbs that ship a finished run: `ma-train merge`, and `ma-train export`'s
`adapter`, `gguf` and `gguf-lora`."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from trainer.config.base import Settings


class ExportConfig(Settings):
    """`ma-train export adapter`: a finished LoRA run as a folder to ship."""

    run: str = Field(json_schema_extra={"argument": True})
    """RUN_DIR of the finished run."""
    adapter_dir: str
    """Folder for `adapter.gguf` (f16 GGUF LoRA) and `metaaligner.json` (replaced files)."""
    base: Optional[str] = None
    """The base model folder the adapter was trained on; default: the run's `base_model`."""
    base_name: Optional[str] = None
    """Name written in place of the training machine's base path."""
    recipe: Optional[str] = None
    """Recorded in `metaaligner.json` as the recipe that made the adapter."""
    keep_margin: Optional[float] = None
    """Recorded in `metaaligner.json`: the runnable's `keep_margin` under "auto" (a rewrite the
    aligner rates within this many nats of a copy gives way to the original). Choose it on the
    validation split for this adapter (examples/default_aligner/keep_margin.py); none: off."""
    keep_margin_per_objective: dict[str, float] = Field({}, json_schema_extra={"metavar": "objective=NATS"})
    """OBJECTIVE=NATS: a margin for requests naming that objective (repeatable); `keep_margin`
    then stands for every other objective, and a request naming several gets the smallest.
    Recorded as one mapping (`"*"`: `keep_margin`)."""


class MergeConfig(Settings):
    """`ma-train merge`: merge a run's LoRA adapter into its base (or copy a full run) as a
    standalone model folder."""

    run: str = Field(json_schema_extra={"argument": True})
    """RUN_DIR from `ma-train train`."""
    out: str
    """MERGED_DIR to write (replaced if it is an earlier merge)."""
    base: Optional[str] = None
    """Base the LoRA was trained on (default: the run's recorded base_model)."""


class GgufConfig(Settings):
    """`ma-train export gguf`: convert a model folder to GGUF, with our prompt format and
    objectives in its metadata."""

    model: str = Field(json_schema_extra={"argument": True})
    """Model folder: MERGED_DIR, RUN_DIR or a base."""
    out: str
    """FILE.gguf to write."""
    quant: str = "f16"
    """f32, f16, bf16, q8_0 (converter) or q4_k_m, q5_k_m, q6_k, ... (llama.cpp quantizer)."""
    llama_cpp_dir: Optional[str] = None
    """A llama.cpp checkout or unpacked llama-cpp-python sdist holding the converters (default:
    the cache filled by `ma-train export fetch-converter`)."""
    pre_tokenizer: Optional[str] = None
    """llama.cpp BPE pre-tokenizer name for a tokenizer the converter does not know."""


class GgufLoraConfig(Settings):
    """`ma-train export gguf-lora`: convert a run's LoRA adapter to a GGUF LoRA, served as
    Llama(model_path=BASE.gguf, lora_path=OUT)."""

    run: str = Field(json_schema_extra={"argument": True})
    """RUN_DIR of a LoRA run."""
    base: str
    """BASE_DIR (Hugging Face folder) the adapter was trained on."""
    out: str
    """ADAPTER.gguf to write."""
    outtype: Literal["f32", "f16", "bf16", "q8_0"] = "f16"
    """Weight type of the GGUF LoRA."""
    llama_cpp_dir: Optional[str] = None
    """A llama.cpp checkout or unpacked llama-cpp-python sdist holding the converters (default:
    the cache filled by `ma-train export fetch-converter`)."""
