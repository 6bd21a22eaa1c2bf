"""Export errors name the field, the value and the fix, and never leave a half-written output."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_unknown_quant_lists_the_known_ones(merged, tmp_path):
    from trainer.export.gguf import export_gguf

    with pytest.raises(ValueError, match=r"`quant` is 'q4_k_x'; known types: .*f16.*q4_k_m.*q8_0"):
        export_gguf(merged, tmp_path / "m.gguf", "q4_k_x")
    with pytest.raises(ValueError, match="importance matrix"):
        export_gguf(merged, tmp_path / "m.gguf", "iq2_xs")
    assert list(tmp_path.iterdir()) == []


def test_unsupported_architecture_is_named_and_leaves_nothing(converter, merged, tmp_path):
    from trainer.export.gguf import export_gguf

    model = tmp_path / "odd"
    shutil.copytree(merged, model)
    config = json.loads((model / "config.json").read_text())
    config["architectures"] = ["NotARealModelForCausalLM"]
    (model / "config.json").write_text(json.dumps(config))
    out = tmp_path / "out" / "odd.gguf"
    with pytest.raises(ValueError, match="'NotARealModelForCausalLM'.*does not support"):
        export_gguf(model, out, "f16")
    assert not out.exists() and leftovers(out.parent) == []


def test_failed_export_keeps_an_earlier_file_whole(converter, merged, tmp_path):
    from trainer.export.gguf import export_gguf

    model = tmp_path / "broken"
    shutil.copytree(merged, model)
    (model / "model.safetensors").write_bytes(b"not safetensors")
    out = tmp_path / "model.gguf"
    out.write_bytes(b"an earlier export")
    with pytest.raises(RuntimeError, match="convert_hf_to_gguf.py failed"):
        export_gguf(model, out, "f16")
    assert out.read_bytes() == b"an earlier export" and leftovers(tmp_path) == []


def test_no_cached_converter_and_no_download(monkeypatch, merged, tmp_path):
    from trainer.export.gguf import export_gguf

    monkeypatch.setenv("METAALIGNER_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("METAALIGNER_OFFLINE", "1")
    monkeypatch.delenv("METAALIGNER_LLAMA_CPP_SDIST", raising=False)
    with pytest.raises(FileNotFoundError, match="not cached.*--llama-cpp-dir"):
        export_gguf(merged, tmp_path / "m.gguf", "f16")
    assert not (tmp_path / "m.gguf").exists()
    assert leftovers(tmp_path / "empty-cache") == []


def test_download_that_fails_says_how_to_work_offline(monkeypatch, tmp_path):
    """A real `pip download` with no index and no local files: pip fails, the fix is named."""
    pytest.importorskip("llama_cpp")
    from trainer.export.convert import fetch_converter

    for name in ("METAALIGNER_OFFLINE", "METAALIGNER_LLAMA_CPP_SDIST", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="could not download.*pip said: .*--llama-cpp-dir"):
        fetch_converter(cache_dir=tmp_path / "cache")
    assert leftovers(tmp_path / "cache") == []


def test_llama_cpp_dir_without_converters(merged, tmp_path):
    from trainer.export.gguf import export_gguf

    with pytest.raises(FileNotFoundError, match="`llama_cpp_dir` .* has no convert_hf_to_gguf.py"):
        export_gguf(merged, tmp_path / "m.gguf", "f16", llama_cpp_dir=tmp_path)


def test_given_llama_cpp_dir_is_used(converter, merged, tmp_path, monkeypatch):
    from trainer.export.gguf import export_gguf

    monkeypatch.setenv("METAALIGNER_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("METAALIGNER_OFFLINE", "1")
    out = export_gguf(merged, tmp_path / "m.gguf", "f32", llama_cpp_dir=converter)
    assert out.read_bytes()[:4] == b"GGUF"


def test_missing_llama_cpp_python(monkeypatch, merged, tmp_path):
    from trainer.export import gguf as export

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # `import llama_cpp` raises ImportError
    with pytest.raises(ImportError, match=r'pip install "metaaligner-chain\[gguf\]"'):
        export.export_gguf(merged, tmp_path / "m.gguf")
    with pytest.raises(ImportError, match="llama-cpp-python"):
        export.export_gguf_lora(tmp_path, merged, tmp_path / "a.gguf")


def test_lora_export_of_a_full_run_points_to_gguf(tmp_path, merged):
    from trainer.export.gguf import export_gguf_lora

    stage = tmp_path / "run" / "stages" / "preference"
    stage.mkdir(parents=True)
    (stage / "stage_done.json").write_text("{}")
    with pytest.raises(ValueError, match="full fine-tuning.*ma-train export gguf"):
        export_gguf_lora(tmp_path / "run", merged, tmp_path / "a.gguf")


def test_cli_prints_the_error_and_exits_2(merged, tmp_path):
    from trainer.cli import app

    result = CliRunner().invoke(app, ["export", "gguf", str(merged), "--out", str(tmp_path / "m.gguf"),
                                      "--quant", "q9"])
    assert result.exit_code == 2 and "`quant` is 'q9'" in result.output
    result = CliRunner().invoke(app, ["merge", str(tmp_path), "--out", str(tmp_path / "m")])
    assert result.exit_code == 2 and "no finished stage" in result.output


def test_help_imports_nothing_heavy():
    code = ("import sys; from trainer.cli import app; "
            "print([m for m in ('torch', 'transformers', 'peft', 'llama_cpp') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
