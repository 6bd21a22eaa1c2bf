"""Per-objective labels from reward models, the way the paper labelled HH-RLHF.

Each objective's sequence-classification reward model scores every (query, response); the raw
rewards are rounded to `round_to` (0.1) and z-normalised per objective over the whole file, so
`data build --tie-tolerance 0` treats rewards equal at that granularity as ties. Output is the
generic format: `{"query": ..., "responses": [{"text": ..., "scores": {objective: z}}]}`.
"""

from __future__ import annotations

import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

from trainer.config import ScoreConfig
from trainer.data.formats import Group, load_groups, write_groups


def reward_texts(groups: list[Group]) -> list[str]:
    """The text a reward model reads per response: the query (an HH transcript ending in
    ``Assistant:`` or a plain query) followed by the response."""
    return [f"{g.query.rstrip()} {r.text}" for g in groups for r in g.responses]


def score_texts(model_path: str, texts: list[str], config: ScoreConfig, progress: Any = None) -> list[float]:
    """Raw rewards (logit 0 of a `num_labels=1` sequence-classification model) for `texts`."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    model = AutoModelForSequenceClassification.from_pretrained(model_path).eval()
    model.config.pad_token_id = tokenizer.pad_token_id
    rewards: list[float] = []
    for start in range(0, len(texts), config.batch_size):
        batch = tokenizer(
            texts[start : start + config.batch_size],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=config.max_length,
        )
        with torch.no_grad():
            logits = model(**batch).logits
        rewards.extend(float(x) for x in logits[:, 0])
        if progress is not None:
            progress()
    return rewards


def normalise(rewards: list[float], round_to: float) -> list[float]:
    """Round to `round_to`, then z-normalise (an all-equal list becomes all zeros)."""
    rounded = [round(round(r / round_to) * round_to, 10) for r in rewards]
    mean = statistics.fmean(rounded)
    std = statistics.pstdev(rounded)
    return [round((r - mean) / std, 6) if std > 0 else 0.0 for r in rounded]


def score_file(config: ScoreConfig, console: Any = None) -> tuple[Path, dict[str, dict]]:
    """Score every response of `config.input` per objective; write generic JSONL; return stats."""
    from rich.progress import Progress

    groups = load_groups(config.input, config.format, config.split)
    texts = reward_texts(groups)
    batches = -(-len(texts) // config.batch_size)
    scores: dict[str, list[float]] = {}
    stats: dict[str, dict] = {}
    with Progress(console=console, transient=True) as progress:
        for key, model_path in config.models.items():
            task = progress.add_task(f"scoring {key}", total=batches)
            raw = score_texts(model_path, texts, config, lambda: progress.advance(task))
            scores[key] = normalise(raw, config.round_to)
            stats[key] = {
                "model": model_path,
                "responses": len(raw),
                "mean": statistics.fmean(raw) if raw else 0.0,
                "std": statistics.pstdev(raw) if raw else 0.0,
            }
    position = 0
    labelled = []
    for group in groups:
        responses = []
        for response in group.responses:
            new = {key: values[position] for key, values in scores.items()}
            responses.append(replace(response, scores={**response.scores, **new}))
            position += 1
        labelled.append(replace(group, responses=tuple(responses)))
    return write_groups(labelled, config.out), stats
