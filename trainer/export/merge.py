"""`ma-train merge`: a finished run → a standalone model folder (the adapter merged into its base,
or the last full-weight stage), written whole or not at all; plus the staging helpers export uses.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from metaaligner_chain.models.metadata import METADATA_FILE
from trainer.train.run_dir import final_model, is_lora, last_stage, run_metadata


def merge(run_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], base: str | None = None) -> Path:
    """Write the run's final model as a standalone folder: safetensors, tokenizer, generation config.

    A LoRA run's last-stage adapter is merged into its base (`base`, default: the run's recorded
    `base_model`); a full run's last stage is copied. `metaaligner.json` is kept (plus
    `merged_from`). `out_dir` is replaced as a whole, so running twice gives the same folder.
    """
    from transformers import AutoTokenizer

    run, out = Path(run_dir), Path(out_dir)
    stage = last_stage(run)
    metadata = run_metadata(run, stage)
    _check_out_dir(out, run)
    with staging_dir(out) as staging:
        model = final_model(stage, _base(base or metadata.get("base_model"), run) if is_lora(stage) else None)
        model.save_pretrained(str(staging), safe_serialization=True)
        AutoTokenizer.from_pretrained(str(stage)).save_pretrained(str(staging))
        metadata["merged_from"] = str(run)
        (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
        replace_dir(staging, out)
    return out


def _base(base: str | None, run: Path) -> str:
    """The base the adapter was trained on, checked to load (a clear error names the fix)."""
    from transformers import AutoConfig

    if not base:
        raise ValueError(
            f"`run_dir` {str(run)!r} does not record its `base_model`; pass the base the "
            "adapter was trained on with `--base BASE_DIR`."
        )
    source = str(Path(base).expanduser())
    try:
        AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as err:  # missing folder, or not a valid hub id either
        raise FileNotFoundError(
            f"could not load the run's base model {base!r} from {Path.cwd()} (a relative "
            "`base_model` is recorded relative to where training ran). Pass the base the adapter "
            "was trained on with `--base BASE_DIR`."
        ) from err
    return source


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
def staging_dir(out: Path):
    """A temporary folder next to `out`, removed on the way out (renamed into place on success)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp's 0o700 would outlive the rename
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def replace_dir(staging: Path, out: Path) -> None:
    old = out.with_name(f".{out.name}-old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}
