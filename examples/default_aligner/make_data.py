"""Build the training data of the built-in default aligner (a copy-editing SmolLM2 LoRA).

Two steps, both offline:

1. `answers`: the default model (SmolLM2-135M-Instruct Q4_1, through llama.cpp, greedy) answers
   every query in `queries.txt` as a policy would; answers are cut back to their last full
   sentence and written to `answers.jsonl`.
2. `rows`: every answer becomes generic-format preference rows for `ma-train data build`
   (`{"query", "responses": [{"text", "scores"}]}`). Each row pairs the clean answer with a copy
   damaged in a way some objectives name, scored 1 (clean) / 0 (damaged) on those and tied on one
   or two objectives the damage does not touch (humour, readability, factuality, specificity,
   fairness):
   - a filler preface or sign-off ("Great question! ...", "I hope this helps! ..."): length;
   - one sentence said twice: repetition, length;
   - a condescending remark about the asker: harmlessness, helpfulness.
   The paper's reformulation then turns each pair into a "better" row (damaged → clean under the
   objectives it breaks), an "equal" row (damaged → clean under the tied ones) and, for a sample
   of the equal rows, a warm-up identity row.

The edits are synthetic, so the aligner learns to copy an answer and cut what these objectives
rule out; it does not learn to add facts or fix wrong ones. See README.md here.

    python examples/default_aligner/make_data.py answers   # ~3 min on 2 cores
    python examples/default_aligner/make_data.py rows
    python examples/default_aligner/make_data.py rows-tied  # the retrain that did not help (README)
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUERIES = HERE / "queries.txt"
ANSWERS = HERE / "answers.jsonl"
ROWS = HERE / "rows.jsonl"
ROWS_TIED = HERE / "rows-tied.jsonl"
#: Objectives no damage touches; one or two of them join each row, tied, so the aligner also
#: learns to leave an answer alone under objectives it cannot act on.
UNTOUCHED = ("humour", "readability", "factuality", "specificity", "fairness")
MAX_ANSWER_TOKENS = 110
VARIANTS_PER_ANSWER = 2
SEED = 0

PREFACES = (
    "Sure! That's a great question, and I'm happy to help you with it.",
    "Great question! Here is everything you need to know.",
    "Of course! I'd be glad to answer that for you.",
    "Thanks for asking! Let me explain.",
    "Absolutely, this is something a lot of people wonder about.",
    "What a wonderful question to ask!",
)
SIGN_OFFS = (
    "I hope this helps! Let me know if you have any other questions.",
    "Feel free to ask if you need anything else.",
    "Good luck, and have a wonderful day!",
    "I hope you found this answer useful and informative.",
    "Thanks again for your question, it was a pleasure to answer it.",
)
REMARKS = (
    "Honestly, this is so basic that you really should have known it already.",
    "Only a lazy person would need to ask something like this.",
    "Try using your brain next time before asking.",
    "Frankly, it's a pretty stupid question.",
    "Anyone with half a brain could figure this out.",
    "I can't believe you need someone to tell you this.",
)

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def sentences(text: str) -> list[str]:
    return [part for part in _SENTENCE_END.split(text.strip()) if part]


def whole_sentences(text: str) -> str:
    """Cut a possibly truncated answer back to its last complete sentence."""
    text = text.strip()
    last = max(text.rfind(mark) for mark in ".!?")
    return text[: last + 1] if last > 0 else text


def generate_answers() -> None:
    from llama_cpp import Llama

    from metaaligner_chain.defaults import default_gguf_path

    llm = Llama(model_path=str(default_gguf_path()), n_ctx=1024, seed=SEED, verbose=False)
    queries = [line.strip() for line in QUERIES.read_text().splitlines() if line.strip()]
    with ANSWERS.open("w") as handle:
        for number, query in enumerate(queries, 1):
            reply = llm.create_chat_completion(
                messages=[{"role": "user", "content": query}],
                max_tokens=MAX_ANSWER_TOKENS,
                temperature=0.0,
            )
            answer = whole_sentences(reply["choices"][0]["message"]["content"])
            handle.write(json.dumps({"query": query, "answer": answer}, ensure_ascii=False) + "\n")
            print(f"{number}/{len(queries)} {query}", file=sys.stderr)


def damage(answer: str, kind: str, rng: random.Random) -> str:
    parts = sentences(answer)
    if kind == "preface":
        return f"{rng.choice(PREFACES)} {answer}"
    if kind == "sign_off":
        return f"{answer} {rng.choice(SIGN_OFFS)}"
    if kind == "repeat":
        index = rng.randrange(len(parts))
        repeated = parts[: index + 1] + [parts[index]] + parts[index + 1 :]
        return " ".join(repeated)
    if kind == "remark":
        return f"{rng.choice(REMARKS)} {answer}" if rng.random() < 0.5 else f"{answer} {rng.choice(REMARKS)}"
    raise ValueError(f"unknown damage {kind!r}")


#: Which objectives each kind of damage breaks.
BREAKS = {
    "preface": ("length",),
    "sign_off": ("length",),
    "repeat": ("repetition", "length"),
    "remark": ("harmlessness", "helpfulness"),
}
#: `rows-tied` only: trained objectives a damage leaves alone, tied on it too, so that warm-up
#: identity rows also name them. Tried against the echoes of the shipped adapter; it did not help.
TIED_ALSO = {
    "preface": ("harmlessness", "helpfulness", "repetition"),
    "sign_off": ("harmlessness", "helpfulness", "repetition"),
    "repeat": ("harmlessness", "helpfulness"),
    "remark": ("repetition",),
}


def build_rows(tie_trained: bool = False) -> None:
    rng = random.Random(SEED)
    kinds = list(BREAKS)
    written = 0
    out = ROWS_TIED if tie_trained else ROWS
    with out.open("w") as handle:
        for line in ANSWERS.read_text().splitlines():
            item = json.loads(line)
            answer = item["answer"]
            if len(sentences(answer)) < 2:  # too short to damage without rewriting it
                continue
            for kind in rng.sample(kinds, VARIANTS_PER_ANSWER):
                broken = BREAKS[kind]
                pool = UNTOUCHED + (TIED_ALSO[kind] if tie_trained else ())
                tied = rng.sample(pool, rng.randint(1, 2))
                clean = {key: 1.0 for key in (*broken, *tied)}
                damaged = {key: (0.0 if key in broken else 1.0) for key in clean}
                row = {
                    "query": item["query"],
                    "responses": [
                        {"text": answer, "scores": clean},
                        {"text": damage(answer, kind, rng), "scores": damaged},
                    ],
                }
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                written += 1
    print(f"wrote {written} rows to {out}", file=sys.stderr)


if __name__ == "__main__":
    steps = {
        "answers": generate_answers,
        "rows": build_rows,
        "rows-tied": lambda: build_rows(tie_trained=True),
    }
    if len(sys.argv) != 2 or sys.argv[1] not in steps:
        sys.exit(f"usage: python {Path(__file__).name} answers|rows|rows-tied")
    steps[sys.argv[1]]()
