"""When the built-in default gives an answer back unchanged, how sure was it of the copy, and what
would its best other start have written? A measurement on the validation sets, not a shipped rule.

    python examples/default_aligner/departure.py JUDGED_DIR[=ITEMS] ... [--cutoffs C ...] [--out FILE]

JUDGED_DIR[=ITEMS] as for keep_margin.py: `validate.py --shipped --keep-margin off` runs of the
built-in default, with the `keep-scores.jsonl` keep_margin.py wrote there. Each item is taken as
the default ships it (its keep margins per objective). For every answer that comes back
unchanged, the aligner scores writing it back: log P per token of the copy (`backend.score`, the
end-of-generation token included; cached in JUDGED_DIR/copy-scores.jsonl). For those at or below
the highest cutoff it makes a *departure*: its most likely first token other than the copy's
first token, then greedy decoding, through the gate as a first attempt (no retry; a turned-down
departure leaves the answer unchanged; cached in JUDGED_DIR/departures.jsonl). Per cutoff: how
many unchanged clean and flawed answers lie at or below it, and all the judged items with a
departure standing for each of those (answers changed, clean kept, chrF and checks win / loss
pooled, harm, and keep_margin.py's rule score) beside the items as shipped, over all runs and per
run. Writes FILE (default: departure.json beside this script).

The departure reads llama.cpp's logits after the prompt, so it runs on the llama.cpp backend the
default ships on; it is an experiment and uses the backend's internals.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

import numpy as np

from keep_margin import Judged, corpus_rows, score
from trainer.jsonl import read_jsonl

HERE = Path(__file__).resolve().parent
CUTOFFS = (-0.2, -0.12, -0.09, -0.07, -0.06, -0.05, -0.04, -0.035)
MAX_NEW_TOKENS = 384  # as validate.py serves the default


def shipped_margins() -> dict[str, float]:
    """The keep margins the built-in default ships (its metaaligner.json)."""
    from metaaligner_chain.models.defaults import ADAPTER_METADATA

    return json.loads(ADAPTER_METADATA.read_text())["keep_margin"]


class Aligner:
    """The built-in default as served (llama.cpp), for copy scores and departures."""

    def __init__(self):
        from metaaligner_chain import MetaAlignerRunnable

        self.runnable = MetaAlignerRunnable(objectives=["helpfulness"], keep_margin=None)
        self.backend = self.runnable.load_backend()
        self.prompt_format = self.runnable._prompt_format()

    def request(self, row: dict):
        from metaaligner_chain.coerce import coerce
        from trainer.evaluate.rewrites import runnable_input

        return coerce(runnable_input(row))

    def copy_per_token(self, row: dict) -> float:
        """log P(copy, then end-of-generation) per token of it."""
        request = self.request(row)
        (copy,) = self.backend.score(self.runnable._prompt(request, self.prompt_format), [request.quoted])
        return copy / (self.backend.count_tokens(request.quoted) + 1)

    def depart(self, row: dict) -> dict:
        """The most likely first token that does not start the copy, then greedy; gated."""
        from metaaligner_chain.backends.base import Generation
        from metaaligner_chain.gate import decide
        from metaaligner_chain.objectives import resolve

        request = self.request(row)
        prompt = self.runnable._prompt(request, self.prompt_format)
        backend = self.backend
        with backend.locked_llama():
            tokens = backend._llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
            backend._make_room(len(tokens), MAX_NEW_TOKENS)
            llama = backend._llama
            copy_start = llama.tokenize(request.quoted.encode("utf-8"), add_bos=False, special=True)[0]
            llama.reset()
            llama.eval(tokens)
            logits = np.ctypeslib.as_array(llama._ctx.get_logits_ith(-1), shape=(llama.n_vocab(),))
            start = next(int(t) for t in np.argsort(-logits) if int(t) not in (copy_start, llama.token_eos()))
            done = llama.create_completion([*tokens, start], max_tokens=MAX_NEW_TOKENS - 1,
                                           temperature=0.0, top_k=1)
            head = llama.detokenize([start]).decode("utf-8", "replace")
        choice = done["choices"][0]
        generation = Generation(head + choice["text"], choice["finish_reason"], len(tokens),
                                done["usage"]["completion_tokens"] + 1)
        verdict = decide(request.response, generation, strict=False,
                         scaffold=self.runnable._scaffold(request, self.prompt_format),
                         objectives=resolve(self.runnable._objectives(request), self.prompt_format),
                         log=False)
        return {"aligned": verdict.text, "start": head, "fallback_reason": verdict.fallback_reason}


def cached(path: Path, ids: list[str], make) -> dict[str, dict]:
    """`make(id)` for every id not yet in the JSONL at `path` (appended as it goes); all by id."""
    known = {row["id"]: row for row in (read_jsonl(path) if path.exists() else [])}
    for n, item_id in enumerate(i for i in ids if i not in known):
        known[item_id] = {"id": item_id, **make(item_id)}
        with path.open("a") as handle:
            handle.write(json.dumps(known[item_id], ensure_ascii=False) + "\n")
        print(f"{path.name} {n + 1}: {item_id}", flush=True)
    return known


def main() -> None:
    from metaaligner_chain.gate import margin_for

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("judged", nargs="+", help="JUDGED_DIR, or JUDGED_DIR=ITEMS for a written set")
    parser.add_argument("--cutoffs", type=float, nargs="+", default=list(CUTOFFS),
                        help="log P per token of the copy at or below which a departure stands")
    parser.add_argument("--out", type=Path, default=HERE / "departure.json")
    args = parser.parse_args()
    margins = shipped_margins()
    aligner = functools.cache(Aligner)  # the model loads only for items not already cached
    rows, runs = {}, {}
    for spec in args.judged:
        folder, _, source = spec.partition("=")
        rows.update(corpus_rows(Path(source) if source else None))
        runs[folder] = list(read_jsonl(Path(folder) / "items.jsonl"))
    judged = [item for run in runs.values() for item in run]
    gaps = [{"id": s["id"], "gap": s["copy"] - s["rewrite"]}
            for folder in runs for s in read_jsonl(Path(folder) / "keep-scores.jsonl") if s["model"] is None]
    judging = Judged(judged, rows, gaps)
    shipped = {item["id"]: item for item in judging.at(lambda row: margin_for(margins, row["objectives"]))}
    per_token, departures = {}, {}
    for folder, run in runs.items():
        unchanged = [i["id"] for i in run if shipped[i["id"]]["aligned"].strip() == i["answer"].strip()
                     and not shipped[i["id"]].get("fallback_reason")]
        scores = cached(Path(folder) / "copy-scores.jsonl", unchanged,
                        lambda i: {"per_token": aligner().copy_per_token(rows[i])})
        per_token.update({i: scores[i]["per_token"] for i in unchanged})
        low = [i for i in unchanged if per_token[i] <= max(args.cutoffs)]
        departures.update(cached(Path(folder) / "departures.jsonl", low, lambda i: aligner().depart(rows[i])))

    def with_departures(items: list[dict], cutoff: float | None) -> list[dict]:
        out = []
        for item in items:
            row = shipped[item["id"]]
            if cutoff is not None and per_token.get(row["id"], 0.0) <= cutoff and row["id"] in departures:
                text = departures[row["id"]]["aligned"]
                row = {**row, "aligned": text, "similarity": judging.judge({**row, "aligned": text})["similarity"]}
            out.append(row)
        return out

    def figures(items: list[dict], cutoff: float | None) -> dict:
        tally = judging.tally(with_departures(items, cutoff))
        clean = sum(item["kind"] == "clean" for item in items)
        below = [i["id"] for i in items if cutoff is not None and per_token.get(i["id"], 0.0) <= cutoff]
        return {"cutoff": cutoff, "unchanged_below": len(below),
                "clean_below": sum(shipped[i]["kind"] == "clean" for i in below),
                **tally, "score": score(tally, clean)}

    table = {"all": [figures(judged, c) for c in (None, *args.cutoffs)]}
    for folder, run in runs.items():
        table[folder] = [figures(run, c) for c in (None, *args.cutoffs)]
    for name, lines in table.items():
        print(f"\n{name} ({len(judged) if name == 'all' else len(runs[name])} items)")
        print("| cutoff | unchanged at or below (clean) | answers changed | clean kept | chrF win / loss "
              "| checks win / loss | harmed | rule's score |")
        print("|---|---|---|---|---|---|---|---|")
        for f in lines:
            label = "shipped" if f["cutoff"] is None else f["cutoff"]
            print(f"| {label} | {f['unchanged_below']} ({f['clean_below']}) | {f['changed']} | {f['clean_kept']} "
                  f"| {f['chrf'][0]} / {f['chrf'][2]} | {f['checks'][0]} / {f['checks'][2]} | {f['harm']} "
                  f"| {f['score']} |")
    args.out.write_text(json.dumps({"judged": args.judged, "margins": margins, "table": table,
                                    "per_token": per_token, "departures": departures}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
