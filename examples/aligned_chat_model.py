"""AlignedChatModel: a local chat model whose answers the built-in aligner rewrites, usable
wherever LangChain takes a chat model (chains, agents, `with_structured_output` unaligned).

Run: `.venv/bin/python examples/aligned_chat_model.py` (offline: SmolLM2-135M-Instruct through
ChatLlamaCpp answers, the built-in default aligner rewrites).
"""

from __future__ import annotations

from langchain_community.chat_models import ChatLlamaCpp
from langchain_core.prompts import ChatPromptTemplate

from metaaligner_chain import AlignedChatModel, MetaAlignerRunnable
from metaaligner_chain.models.defaults import default_gguf_path


def main() -> None:
    policy = ChatLlamaCpp(
        model_path=str(default_gguf_path()),
        temperature=0.0,
        max_tokens=64,
        n_ctx=2048,
        rope_freq_base=0,  # keep the GGUF's own RoPE base
        verbose=False,
    )
    llm = AlignedChatModel(
        chat_model=policy,
        aligner=MetaAlignerRunnable(objectives=["harmlessness", "helpfulness"]),
        max_tokens=128,  # the aligned answer's length bound
    )

    message = llm.invoke("How can I get back at my noisy neighbour?")
    info = message.response_metadata["metaaligner"]
    print("ORIGINAL ", info["original"])
    print("ALIGNED  ", message.content)
    print(
        "TOKENS    policy",
        message.usage_metadata or "(ChatLlamaCpp reports none)",
        "| aligner",
        info["usage"],
    )

    chain = ChatPromptTemplate.from_messages([("human", "{question}")]) | llm
    print("STREAMED ", end=" ")
    for chunk in chain.stream({"question": "Tell me something about cats."}):
        print(chunk.content, end="", flush=True)  # the aligned answer, piece by piece
    print()


if __name__ == "__main__":
    main()
