"""MetaAligner for LangChain: align any chain's answers to several objectives with a small aligner.

Public names only; importing this package loads neither torch, transformers nor llama_cpp.
"""

from metaaligner_chain.backends.base import AlignerConfigError
from metaaligner_chain.chat_model import AlignedChatModel
from metaaligner_chain.gate import AlignerError
from metaaligner_chain.objectives import Objective
from metaaligner_chain.prompt import build_prompt, format_context
from metaaligner_chain.runnable import MetaAlignerRunnable

__all__ = [
    "AlignedChatModel",
    "AlignerConfigError",
    "AlignerError",
    "MetaAlignerMiddleware",
    "MetaAlignerRunnable",
    "Objective",
    "build_prompt",
    "format_context",
]
__version__ = "0.1.0"


def __getattr__(name: str):  # the middleware needs the optional `agents` extra: import on use
    if name == "MetaAlignerMiddleware":
        from metaaligner_chain.middleware import MetaAlignerMiddleware

        return MetaAlignerMiddleware
    raise AttributeError(f"module 'metaaligner_chain' has no attribute {name!r}")
