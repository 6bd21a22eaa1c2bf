"""A preference stage over the built-in default aligner (trl's DPO), an experiment for issue 13.

The sixth look (README.md here) found the default giving back flawed answers it is unsure of: its
own log-probability of the copy separates them from the clean ones. The three SFT stages never
show it the copy as a wrong answer. This stage does, with pairs from the recipe's training split
only (`runs/default-aligner-data`, built by the recipe's `data` section):

- a flawed answer: the written rewrite is chosen over writing the answer back unchanged;
- a clean answer the default edits (its own greedy output, no gate): the answer as it is, chosen
  over that edit.

A new LoRA adapter is trained over the merged default (`default_aligner_hf_dir()`, fp32) with
`trl.DPOTrainer` (reference = the merged default itself, its log-probabilities computed once),
merged into a model folder that `validate.py` judges on both validation sets:

    ma-train data build examples/default_aligner/corpus/train --format generic --prompt-format hh-rlhf \
        --out runs/default-aligner-data --seed 0 --warmup-fraction 0.3 --val-fraction 0.08
    python examples/default_aligner/preference.py pairs [--flawed 320] [--clean 200] [--clean-samples K]
    python examples/default_aligner/preference.py train [--beta 0.1] [--lr 5e-5] [--steps N] [--save-every N]
    python examples/default_aligner/preference.py merge OUT/trainer/checkpoint-N --out OUT/model-N
    python examples/default_aligner/validate.py runs/preference/model --quant q8_0 --keep-margin off \
        [--items examples/default_aligner/validation-topics --out runs/preference/model/validation-topics]
    python examples/default_aligner/preference.py compare SUMMARY.json ... [--json OUT]

`validate.py` names its summaries for such a run validation[-topics]-<run>-keep-off.json; the
ones of the runs in the README are committed as validation[-topics]-preference[-balanced]-keep-off.json
(seventh look) and, written with `validate.py --summary`, validation[-topics]-preference-clean[-22]-keep-off.json
(eighth look: `pairs --flawed 128 --clean 140 --clean-samples 3`, `train --save-every 11 --out
runs/preference-clean`, step 22 merged with `merge`) and validation[-topics]-preference-close[-18]-keep-off.json
(ninth look: the same pairs command with `--temperature 0.3`, `train --save-every 9 --out
runs/preference-close`, step 18 merged).
Writes runs/preference/: clean-edits.jsonl (the default's outputs on clean training answers,
cached: a rerun generates only what is missing), pairs.jsonl, adapter/, model/ and
training-log.json (loss, reward margin and accuracy per logged step, seconds).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from trainer.jsonl import read_jsonl
from trainer.recipe import load_recipe

HERE = Path(__file__).resolve().parent
OUT = Path("runs/preference")
ANSWER, EDIT = "| Answer: ", " | Edit: "


def answer_of(prompt: str) -> str:
    """The answer a training row's prompt asks the aligner to edit."""
    return prompt.split(ANSWER, 1)[1].rsplit(EDIT, 1)[0]


def training_rows(data_dir: Path) -> tuple[list[dict], list[dict]]:
    """(flawed, clean) "better" rows of the training split: a clean row's target is its answer."""
    source = data_dir / "preference.jsonl"
    if not source.exists():
        raise SystemExit(f"{source} does not exist: build the recipe's rows first (the `ma-train "
                         "data build` line in this script's docstring).")
    flawed, clean = [], []
    for row in read_jsonl(source):
        same = row["completion"].strip() == answer_of(row["prompt"]).strip()
        (clean if same else flawed).append(row)
    return flawed, clean


def clean_edits(rows: list[dict], cache: Path, max_new_tokens: int, samples: int = 0,
                temperature: float = 0.7, top_p: float = 0.9) -> dict[str, str]:
    """The default's greedy output for each row's prompt (llama.cpp, the served Q8_0 file, no
    gate); with `samples`, where greedy gives the answer back, up to that many sampled outputs
    (seeds 1, 2, ...) until one differs. Appended to `cache` as it goes, one record per prompt and
    sampler (none for greedy): a rerun generates only what is missing."""
    from metaaligner_chain.backends.base import GenerationSettings

    def key(record: dict) -> tuple:
        return tuple(record.get(k) for k in ("prompt", "seed", "temperature", "top_p"))

    done = {key(r): r["output"] for r in read_jsonl(cache)} if cache.exists() else {}
    engine, edits = None, {}
    with cache.open("a") as sink:
        for i, row in enumerate(rows):
            answer = answer_of(row["prompt"])
            for seed in [None, *range(1, samples + 1)]:
                sampler = {} if seed is None else {"temperature": temperature, "top_p": top_p}
                record = {"prompt": row["prompt"], "seed": seed, **sampler}
                if key(record) not in done:
                    engine = engine or _default_engine()
                    settings = GenerationSettings(max_new_tokens=max_new_tokens, seed=seed, **sampler)
                    (out,) = engine.generate([row["prompt"]], settings, responses=[answer])
                    done[key(record)] = out.text
                    sink.write(json.dumps(record | {"output": out.text}) + "\n")
                    sink.flush()
                edits[row["prompt"]] = done[key(record)]
                if edits[row["prompt"]].strip() != answer.strip():
                    break
            if i % 20 == 0:
                print(f"clean edits {i + 1}/{len(rows)}", flush=True)
    if engine is not None:
        engine.close()
    return edits


def _default_engine():
    """The built-in default on llama.cpp, as it is served (its Q8_0 file)."""
    from metaaligner_chain.backends.llamacpp import LlamaCppBackend
    from metaaligner_chain.models.defaults import default_aligner_light

    return LlamaCppBackend(default_aligner_light())


def make_pairs(args: argparse.Namespace) -> None:
    recipe = load_recipe(HERE / "recipe.yaml")
    flawed, clean = training_rows(Path(recipe.data.out))
    rng = random.Random(0)
    flawed = rng.sample(flawed, min(args.flawed, len(flawed)))
    clean = rng.sample(clean, min(args.clean, len(clean)))
    OUT.mkdir(parents=True, exist_ok=True)
    edits = clean_edits(clean, OUT / "clean-edits.jsonl", args.max_new_tokens,
                        args.clean_samples, args.temperature, args.top_p)
    pairs = pairs_from(flawed, clean, edits)
    rng.shuffle(pairs)
    with (OUT / "pairs.jsonl").open("w") as sink:
        sink.writelines(json.dumps(p) + "\n" for p in pairs)
    edited = sum(p["kind"] == "clean" for p in pairs)
    print(f"{len(flawed)} flawed pairs; {edited} of {len(clean)} clean answers edited by the "
          f"default → {edited} clean pairs; wrote {OUT / 'pairs.jsonl'}")


def pairs_from(flawed: list[dict], clean: list[dict], edits: dict[str, str]) -> list[dict]:
    """DPO pairs: a flawed row's rewrite over its answer written back; a clean row's answer over
    the default's edit of it (none where the default gave it back unchanged)."""
    pairs = [{"prompt": r["prompt"], "chosen": r["completion"], "rejected": answer_of(r["prompt"]),
              "kind": "flawed", "objectives": r["objectives"]} for r in flawed]
    edited = [r for r in clean if edits[r["prompt"]].strip() != answer_of(r["prompt"]).strip()]
    return pairs + [{"prompt": r["prompt"], "chosen": r["completion"], "rejected": edits[r["prompt"]],
                     "kind": "clean", "objectives": r["objectives"]} for r in edited]


def train(args: argparse.Namespace) -> None:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from metaaligner_chain.models.defaults import default_aligner_hf_dir
    from trainer.train.inputs import completion_token_ids, load_tokenizer

    torch.manual_seed(0)
    base = default_aligner_hf_dir()
    if not (OUT / "pairs.jsonl").exists():
        raise SystemExit(f"{OUT / 'pairs.jsonl'} does not exist: run `preference.py pairs` first.")
    pairs = read_jsonl(OUT / "pairs.jsonl")
    if args.max_flawed is not None:
        flawed = iter(range(args.max_flawed))
        pairs = [p for p in pairs if p["kind"] == "clean" or next(flawed, None) is not None]
    if args.pairs:
        pairs = pairs[: args.pairs]
    out = args.out
    data = Dataset.from_list([{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs])
    tokenizer = load_tokenizer(str(base))
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = DPOConfig(
        output_dir=str(out / "trainer"), beta=args.beta, learning_rate=args.lr,
        per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=args.accumulate,
        num_train_epochs=1, max_steps=args.steps or -1, max_length=args.max_length,
        precompute_ref_log_probs=True, use_cpu=True, bf16=args.bf16, logging_steps=1,
        save_strategy="steps" if args.save_every else "no", save_steps=args.save_every or 500,
        save_only_model=True, report_to=[], lr_scheduler_type="constant_with_warmup", warmup_steps=2,
        loss_type=args.loss, loss_weights=args.loss_weights,
    )
    lora = LoraConfig(r=args.lora_r, lora_alpha=2 * args.lora_r, lora_dropout=0.0,
                      target_modules="all-linear", task_type="CAUSAL_LM")
    log: list[dict] = []

    class Keep(TrainerCallback):
        def on_log(self, _args, state, _control, logs=None, **_):
            log.append({"step": state.global_step, "seconds": round(time.perf_counter() - started, 1),
                        **{k: round(v, 4) for k, v in (logs or {}).items() if isinstance(v, float)}})
            print(json.dumps(log[-1]), flush=True)

    class Trainer(DPOTrainer):
        def _prepare_dataset(self, dataset, *_):
            """Tokenized as the SFT stages are (`trainer.train.inputs.tokenize_rows`): the prompt
            with BOS verbatim, then the completion and EOS. trl's own tokenizing of prompt +
            completion as one string drops the prompt's last token (the space after `Edit:`)."""
            def ids(row: dict) -> dict:
                return {"prompt_ids": tokenizer(row["prompt"])["input_ids"],
                        "chosen_ids": completion_token_ids(tokenizer, row["chosen"]),
                        "rejected_ids": completion_token_ids(tokenizer, row["rejected"])}
            return dataset.map(ids, remove_columns=dataset.column_names)

    started = time.perf_counter()
    trainer = Trainer(model=model, args=config, train_dataset=data, processing_class=tokenizer,
                      peft_config=lora, callbacks=[Keep()])
    trainer.train()
    seconds = time.perf_counter() - started
    trainer.model.save_pretrained(out / "adapter")
    save_merged(trainer.model, tokenizer, base, out / "model")
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    (out / "training-log.json").write_text(json.dumps({
        "pairs": len(pairs), "settings": settings | {"base": str(base)},
        "seconds": round(seconds, 1), "log": log}, indent=1) + "\n")
    print(f"trained on {len(pairs)} pairs in {seconds / 60:.1f} min; wrote {out / 'model'}")


def save_merged(model, tokenizer, base: Path, dest: Path) -> None:
    """The adapter merged into the default's weights, with its tokenizer and metadata: a model
    folder `validate.py` can judge."""
    from metaaligner_chain.models.metadata import METADATA_FILE

    model.merge_and_unload().save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    (dest / METADATA_FILE).write_text((base / METADATA_FILE).read_text())


def merge(args: argparse.Namespace) -> None:
    """A checkpoint that `train --save-every` wrote (its adapter) merged into a model folder."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from metaaligner_chain.models.defaults import default_aligner_hf_dir
    from trainer.train.inputs import load_tokenizer

    if not (args.checkpoint / "adapter_config.json").exists():
        raise SystemExit(f"{args.checkpoint} holds no adapter: pass a checkpoint-N folder that "
                         "`preference.py train --save-every N` wrote.")
    base = default_aligner_hf_dir()
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    save_merged(PeftModel.from_pretrained(model, args.checkpoint), load_tokenizer(str(base)),
                base, args.out)
    print(f"wrote {args.out}")


def rule_figures(summary: dict) -> dict:
    """A `validate.py` summary's figures: answers changed, clean kept, fallbacks, harm, chrF and
    checks win / tie / loss pooled over the objectives, and `keep_margin.py`'s rule score."""
    from keep_margin import score

    pooled = {judge: [sum(o[judge][k] for o in summary["objectives"].values())
                      for k in ("win", "tie", "loss")] for judge in ("chrf", "independent")}
    clean, harm = summary["clean"], summary["harm"]["count"]
    split = {"chrf": pooled["chrf"], "checks": pooled["independent"],
             "clean_kept": clean["kept"], "harm": harm}
    return {"items": summary["items"], "changed": summary["changed"],
            "clean_kept": f"{clean['kept']} / {clean['items']}",
            "fallbacks": summary["fallbacks"]["count"], "harm": harm,
            "chrf": pooled["chrf"], "checks": pooled["independent"],
            "score": score(split, clean["items"])}


def compare(args: argparse.Namespace) -> None:
    """`validate.py` summaries (its examples/default_aligner/*.json) side by side: answers changed,
    clean kept, fallbacks, harm, chrF and checks win / tie / loss pooled over the objectives, and
    `keep_margin.py`'s rule score (chrF and checks net wins, less clean answers edited and harmed
    answers)."""
    figures = {}
    for path in args.summaries:
        figures[path.name] = rule_figures(json.loads(path.read_text()))
        print(json.dumps({"summary": path.name, **figures[path.name]}))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    pairs = sub.add_parser("pairs", help="pairs from the recipe's training split")
    pairs.add_argument("--flawed", type=int, default=320, help="flawed answers sampled")
    pairs.add_argument("--clean", type=int, default=200, help="clean answers the default is run on")
    pairs.add_argument("--max-new-tokens", type=int, default=384)
    pairs.add_argument("--clean-samples", type=int, default=0,
                       help="where greedy gives a clean answer back, sample up to N edits of it")
    pairs.add_argument("--temperature", type=float, default=0.7, help="for --clean-samples")
    pairs.add_argument("--top-p", type=float, default=0.9, help="for --clean-samples")
    fit = sub.add_parser("train", help="DPO over the merged default")
    fit.add_argument("--pairs", type=int, help="the first N pairs only")
    fit.add_argument("--max-flawed", type=int, help="at most N flawed pairs (every clean one kept)")
    fit.add_argument("--out", type=Path, default=OUT, help="where adapter/, model/ and the log go")
    fit.add_argument("--steps", type=int, help="stop after N optimizer steps")
    fit.add_argument("--save-every", type=int, help="save the adapter every N steps (checkpoint-N/)")
    fit.add_argument("--beta", type=float, default=0.1)
    fit.add_argument("--lr", type=float, default=5e-5)
    fit.add_argument("--batch-size", type=int, default=4)
    fit.add_argument("--accumulate", type=int, default=2)
    fit.add_argument("--max-length", type=int, default=640)
    fit.add_argument("--lora-r", type=int, default=16)
    fit.add_argument("--loss", nargs="+", default=["sigmoid", "sft"],
                     help="trl loss types; sigmoid + sft is DPO with the chosen answer's NLL (RPO)")
    fit.add_argument("--loss-weights", type=float, nargs="+")
    fit.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=False,
                     help="bf16 autocast: ~8x slower than fp32 on CPUs without AVX512-BF16/AMX")
    join = sub.add_parser("merge", help="a saved checkpoint merged into a model folder")
    join.add_argument("checkpoint", type=Path, help="OUT/trainer/checkpoint-N")
    join.add_argument("--out", type=Path, required=True, help="the model folder to write")
    versus = sub.add_parser("compare", help="validate.py summaries side by side")
    versus.add_argument("summaries", type=Path, nargs="+")
    versus.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    {"pairs": make_pairs, "train": train, "merge": merge, "compare": compare}[args.command](args)


if __name__ == "__main__":
    main()
