"""Average trained adapters into one (a "model soup", Wortsman et al., ICML 2022): a RUN_DIR that
`validate.py` and `ma-train export` read like a trained one.

    python examples/default_aligner/soup.py OUT_RUN --run runs/seed1 [--run runs/seed2 ...]
                                            [--gguf metaaligner_chain/default_aligner/adapter.gguf]
                                            [--combine svd|cat] [--rank 64]

Each source is a run's last-stage LoRA adapter (`--run`), or a GGUF LoRA (`--gguf`: the shipped
default keeps only that file) read back into peft's layout, the converter's Q/K row order undone
(`--check-gguf RUN` converts RUN's adapter and reads it back, to show the round trip is exact
within f16). peft's `add_weighted_adapter` averages the adapters' weight changes with equal
weights: `cat` exactly (rank = the sum of ranks), `svd` as the best approximation at `--rank`.
OUT_RUN/stages/preference holds the soup, OUT_RUN/ its merged model.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

#: The stage files a finished stage keeps beside its adapter (tokenizer, chat template, metadata).
_STAGE_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                "metaaligner.json")


#: The modules a LoRA adapter of a llama model can train (all seven, as the default aligner's does).
_MODULES = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
            "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


def peft_state_from_gguf(path: Path, config: dict) -> dict:
    """The LoRA tensors of a GGUF adapter under peft's names, in peft's row order."""
    import numpy as np
    import torch
    from gguf import GGUFReader, MODEL_ARCH, get_tensor_name_map

    reader = GGUFReader(str(path))
    tensors = {t.name: np.array(t.data, dtype=np.float32) for t in reader.tensors}
    blocks = 1 + max(int(name.split(".")[1]) for name in tensors)
    names = get_tensor_name_map(MODEL_ARCH.LLAMA, blocks)
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    state = {}
    for layer in range(blocks):
        for module in _MODULES:
            hf = f"model.layers.{layer}.{module}"
            gguf_name = names.get_name(hf + ".weight", try_suffixes=(".weight",))
            for part, key in (("lora_a", "lora_A"), ("lora_b", "lora_B")):
                data = tensors[f"{gguf_name}.{part}"]
                if part == "lora_b" and module.endswith(("q_proj", "k_proj")):
                    data = _unpermute(data, heads if module.endswith("q_proj") else kv_heads)
                state[f"base_model.model.{hf}.{key}.weight"] = torch.from_numpy(data.copy())
    return state


def _unpermute(rows, heads: int):
    """Undo llama.cpp's interleaving of each head's rotary halves (rows of a Q or K weight)."""
    shape = rows.shape
    return rows.reshape(heads, shape[0] // heads // 2, 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def adapter_from_gguf(path: Path, template: Path, out: Path) -> Path:
    """A peft adapter folder from a GGUF LoRA; `template` is a stage folder of the same shape
    (its adapter_config.json, tokenizer and metadata are copied)."""
    from safetensors.torch import save_file
    from transformers import AutoConfig

    config = json.loads((template / "adapter_config.json").read_text())
    base = AutoConfig.from_pretrained(config["base_model_name_or_path"]).to_dict()
    state = peft_state_from_gguf(path, base)
    rank = next(iter(state.values())).shape[0]
    if rank != config["r"]:
        raise ValueError(f"`--gguf` {str(path)!r} has rank {rank}; the template "
                         f"{str(template)!r} has {config['r']}. Pass a --run trained with the same "
                         "rank first.")
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "adapter_model.safetensors"))
    for name in ("adapter_config.json", *_STAGE_FILES):
        if (template / name).is_file():
            shutil.copy(template / name, out / name)
    return out


def soup(adapters: list[Path], out: Path, combine: str, rank: int) -> Path:
    """Average `adapters` into OUT/stages/preference and merge it into OUT."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from trainer.export.merge import merge
    from trainer.train.run_dir import DONE_FILE

    base_path = _base_path(adapters[0])
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(adapters[0]), adapter_name="a0")
    for i, adapter in enumerate(adapters[1:], start=1):
        model.load_adapter(str(adapter), adapter_name=f"a{i}")
    names = [f"a{i}" for i in range(len(adapters))]
    weights = [1.0 / len(names)] * len(names)
    # Named "default", the average is what peft saves at the folder's top (others go in subfolders).
    model.add_weighted_adapter(names, weights, "default", combination_type=combine,
                               svd_rank=rank if combine == "svd" else None, svd_full_matrices=False)
    model.set_adapter("default")
    for name in names:
        model.delete_adapter(name)
    stage = out / "stages" / "preference"
    model.save_pretrained(str(stage))
    for name in _STAGE_FILES:
        if (adapters[0] / name).is_file():
            shutil.copy(adapters[0] / name, stage / name)
    (stage / DONE_FILE).write_text(json.dumps({"soup_of": [str(a) for a in adapters],
                                               "combine": combine, "rank": rank}, indent=2) + "\n")
    merged = out.with_name(out.name + ".merging")  # merge refuses a folder inside the run
    merge(out, merged)
    for item in merged.iterdir():
        shutil.move(str(item), out / item.name)
    merged.rmdir()
    return out


def _base_path(adapter: Path) -> str:
    return json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]


def check_round_trip(run: Path, work: Path) -> float:
    """Convert RUN's adapter to a GGUF LoRA, read it back; the largest relative difference."""
    from safetensors.torch import load_file
    from transformers import AutoConfig

    from trainer.export.gguf import export_gguf_lora
    from trainer.train.run_dir import last_stage

    stage = last_stage(run)
    base = _base_path(stage)
    gguf = export_gguf_lora(run, base, work / "check.gguf")
    back = peft_state_from_gguf(gguf, AutoConfig.from_pretrained(base).to_dict())
    trained = load_file(str(stage / "adapter_model.safetensors"))
    worst = 0.0
    for key, value in trained.items():
        worst = max(worst, float((back[key] - value).norm() / value.norm()))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, nargs="?")
    parser.add_argument("--run", type=Path, action="append", default=[])
    parser.add_argument("--gguf", type=Path, action="append", default=[])
    parser.add_argument("--combine", choices=("svd", "cat"), default="svd")
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--check-gguf", type=Path, metavar="RUN")
    args = parser.parse_args()
    from trainer.train.run_dir import last_stage

    if args.check_gguf:
        work = Path("runs/soup-check")
        work.mkdir(parents=True, exist_ok=True)
        worst = check_round_trip(args.check_gguf, work)
        print(f"largest relative difference after the round trip: {worst:.2e}")
        return
    if not args.out or len(args.run) + len(args.gguf) < 2 or not args.run:
        parser.error("name OUT_RUN, at least one --run and two sources in all")
    stages = [last_stage(run) for run in args.run]
    parts = [adapter_from_gguf(g, stages[0], args.out / "sources" / f"gguf{i}")
             for i, g in enumerate(args.gguf)]
    print(soup(parts + stages, args.out, args.combine, args.rank))


if __name__ == "__main__":
    main()
