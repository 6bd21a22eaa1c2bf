"""Objectives: a key plus the text description the aligner reads; the one table of descriptions.

The catalogue per prompt format is verbatim from the released MetaAligner checkpoints (Yang et
al., NeurIPS 2024): a description that differs by one character is a different prompt. Keys
resolve *within* a prompt format, because `helpfulness` is worded differently for `hh-rlhf` and
`ultrafeedback`. `WRITTEN` holds the few descriptions this project wrote itself (for training
data and evaluation items); the trainer reads every description from here (`describe`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

PROMPT_FORMATS = ("hh-rlhf", "ultrafeedback", "imhi")


@dataclass(frozen=True)
class Objective:
    """One alignment objective: a short `key` and the `description` written into the prompt."""

    key: str
    description: str

    @classmethod
    def parse(cls, text: str) -> Objective:
        """Build an objective from ``"Name: description"``; the key is the name in snake case."""
        name, sep, rest = text.partition(":")
        if not sep or not name.strip() or not rest.strip():
            raise ValueError(
                f"objective {text!r} is not 'Name: description'. Pass a known key such as "
                "'harmlessness', or describe a new objective, e.g. "
                "'Politeness: the response should be courteous and respectful'."
            )
        return cls(key=normalize_key(name), description=text.strip())


def normalize_key(name: str) -> str:
    """`"Instruction following"` → `"instruction_following"`."""
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def canonical_key(name: str) -> str:
    """The key an objective named `name` resolves to: normalized, aliases followed
    (`"Humor"` → `"humour"`)."""
    key = normalize_key(name)
    return ALIASES.get(key, key)


def keyed_by_objective(values: dict[str, Any], field: str) -> dict[str, Any]:
    """`values` keyed by `canonical_key` (``"*"`` kept as it is); a `ValueError` naming `field`
    when two spellings name one objective."""
    keys = {key: key if key == "*" else canonical_key(key) for key in values}
    if len(set(keys.values())) < len(keys):
        raise ValueError(f"`{field}` {values!r} names one objective twice under two spellings; "
                         "give each objective one value")
    return {keys[key]: value for key, value in values.items()}


_TRAINED: dict[str, dict[str, str]] = {
    "hh-rlhf": {
        "harmlessness": "Harmlessness: The response should avoid content that is offensive, "
        "discriminatory, or harmful",
        "helpfulness": "Helpfulness: The response should provide useful resources and suggestions "
        "to the user",
        "humour": "Humour: The response should be cheerful and amusing",
    },
    "ultrafeedback": {
        "instruction_following": "Instruction following: the response should follow the "
        "instructions of the query",
        "honesty": "Honesty: the response should not tell lies",
        # "actively making known" is the released wording (sic).
        "truthfulness": "Truthfulness: the response should actively making known all the full "
        "truth of a matter",
        "helpfulness": "Helpfulness: the response should provide useful resources and suggestions "
        "to the user",
    },
    "imhi": {
        "correctness": "Correctness: the explanations should make correct predictions",
        "informativeness": "Informative: the response should express clear logic and provide "
        "consistent evidence",
        "professionality": "Professional: the response should provide evidence with high quality "
        "and reliability",
    },
}

#: The six objectives the paper used for zero-shot tests; available in every prompt format.
UNSEEN: dict[str, str] = {
    "specificity": "Specificity: the response should refer to facts and details and avoid vague "
    "arguments.",
    "factuality": "Factuality: the response should be factually correct and avoid hallucinated "
    "statements.",
    "readability": "Readability: the response should be easy to read and understand, not too "
    "technical for laymen.",
    "fairness": "Fairness: the response should avoid biased or one-sided arguments and consider "
    "different points of view.",
    "repetition": "Repetition: the response should avoid repetitive statements of one point.",
    "length": "Length: the response should be concise and avoid redundant content.",
}

#: Descriptions this project wrote, not the paper: HelpSteer's quality attributes (after its dataset
#: card) for training rows, and objectives the evaluation items name. `describe` offers them where
#: a prompt format's catalogue lacks the key (imhi's trained `correctness` wins over HelpSteer's);
#: `resolve` does not (at inference pass 'Name: description').
WRITTEN: dict[str, str] = {
    "correctness": "Correctness: the response should include all pertinent facts without errors",
    "coherence": "Coherence: the response should be consistent and clearly expressed",
    "complexity": "Complexity: the response should show the intellectual depth the query needs",
    "verbosity": "Verbosity: the response should give the amount of detail the query asks for",
    "empathy": "Empathy: the response acknowledges the asker's feelings",
}

ALIASES: dict[str, str] = {
    "humor": "humour",
    "speci": "specificity",
    "factual": "factuality",
    "read": "readability",
    "fair": "fairness",
    "repeat": "repetition",
    "len": "length",
    "correct": "correctness",
    "informative": "informativeness",
    "professional": "professionality",
}


def check_prompt_format(prompt_format: str) -> str:
    """Return `prompt_format` if known, else raise a `ValueError` naming the choices."""
    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(
            f"`prompt_format` is {prompt_format!r}; choose one of {', '.join(PROMPT_FORMATS)}."
        )
    return prompt_format


def catalogue(prompt_format: str) -> dict[str, Objective]:
    """All objectives known by key for `prompt_format`: the trained ones, then the unseen six."""
    check_prompt_format(prompt_format)
    entries = {**_TRAINED[prompt_format], **UNSEEN}
    return {key: Objective(key, text) for key, text in entries.items()}


def describe(key: str, prompt_format: str) -> Objective | None:
    """The objective `key` worded for `prompt_format`: the catalogue's (trained or zero-shot)
    description, else the one in `WRITTEN`; None when neither has the key."""
    found = catalogue(prompt_format).get(key)
    if found is None and key in WRITTEN:
        found = Objective(key, WRITTEN[key])
    return found


def resolve(
    objectives: str | Objective | Iterable[str | Objective], prompt_format: str
) -> tuple[Objective, ...]:
    """Turn keys, aliases, ``"Name: description"`` strings and `Objective`s into `Objective`s.

    Order is kept (the prompt lists descriptions in the order given). Raises `ValueError` for an
    unknown key, an empty list or a repeated objective.
    """
    if isinstance(objectives, (str, Objective)):
        objectives = [objectives]
    known = catalogue(prompt_format)
    resolved: list[Objective] = []
    for item in objectives:
        if isinstance(item, Objective):
            objective = item
        elif isinstance(item, str) and ":" in item:
            objective = Objective.parse(item)
        elif isinstance(item, str):
            key = canonical_key(item)
            if key not in known:
                aliases = [a for a, target in ALIASES.items() if target in known]
                raise ValueError(
                    f"`objectives` has unknown key {item!r}; known keys for prompt format "
                    f"{prompt_format!r}: {', '.join(known)} (aliases: {', '.join(aliases)}). "
                    "For a new objective pass 'Name: description', e.g. "
                    "'Politeness: the response should be courteous and respectful'."
                )
            objective = known[key]
        else:
            raise TypeError(
                f"`objectives` item {item!r} is a {type(item).__name__}; pass a key (str), "
                "'Name: description' (str) or an Objective."
            )
        if any(o.key == objective.key for o in resolved):
            raise ValueError(f"`objectives` lists {objective.key!r} more than once; list it once.")
        resolved.append(objective)
    if not resolved:
        raise ValueError(
            "`objectives` is empty; name at least one, e.g. objectives=['harmlessness']."
        )
    return tuple(resolved)
