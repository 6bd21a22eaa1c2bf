"""The output head's product in the orientation the CPU's BLAS computes fastest.

transformers computes the logits as `F.linear(hidden, W)` (hidden @ W.T) with the head's weight W,
for the default aligner the tied 49,152 x 576 embedding: a product with few rows (one in plain
decoding, 2 to 32 when drafting verifies a draft or the keep test scores an answer) against a very
wide matrix. With torch's MKL on this project's CPU machines that product ran up to about three
times slower at 4 to 32 rows than the same product taken as (W @ hidden.T).T, and no faster at one
row (`benchmarks/bench_transformers_profile.py`; its results file has the table). `transpose_head`
swaps the model's output layer for one computing it that way, holding the same weight (tied
embeddings stay tied, nothing is copied).
"""

from __future__ import annotations

from typing import Any

import torch


class TransposedHead(torch.nn.Module):
    """A bias-free output layer computing `hidden @ weight.T` as `(weight @ hidden.T).T`."""

    def __init__(self, weight: torch.nn.Parameter):
        super().__init__()
        self.weight = weight

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        rows = hidden.reshape(-1, hidden.shape[-1])
        return torch.mm(self.weight, rows.t()).t().reshape(*hidden.shape[:-1], self.weight.shape[0])


def transpose_head(lm: Any) -> bool:
    """Give `lm` a `TransposedHead` when its output layer is a plain bias-free `Linear` on the CPU
    in fp32 (where it was measured); True when swapped."""
    head = lm.get_output_embeddings()
    if (type(head) is not torch.nn.Linear or head.bias is not None
            or head.weight.device.type != "cpu" or head.weight.dtype != torch.float32):
        return False
    lm.set_output_embeddings(TransposedHead(head.weight))
    return True


def logits_are_the_head_alone(lm: Any) -> bool:
    """True when `lm`'s logits are its output layer applied to its decoder's last hidden states,
    with nothing after it (some models cap or scale the logits in their forward), checked once on
    a few tokens; then a caller may take the logits a few rows at a time from the hidden states."""
    ids = torch.tensor([[1, 2, 3, 4]], device=lm.device)
    try:
        with torch.inference_mode():
            whole = lm(input_ids=ids, use_cache=False).logits.float()
            hidden = lm.get_decoder()(input_ids=ids, use_cache=False).last_hidden_state
            apart = lm.get_output_embeddings()(hidden).float()
    except Exception:  # a probe: a model it cannot run this way keeps the forward path
        return False
    return whole.shape == apart.shape and torch.allclose(whole, apart, rtol=1e-3, atol=1e-3)
