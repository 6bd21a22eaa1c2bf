"""Shared fixtures: a tiny llama model built offline once per session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random llama model + byte-level BPE tokenizer, saved with `save_pretrained`."""
    from trainer.train.tiny import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))
