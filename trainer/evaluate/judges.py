"""Judges: decide, for one objective, whether text `x` beats text `y` as an answer to a query.

Every judge returns outcomes from `x`'s side: "win", "tie", "loss", or "invalid" (a chat judge's
answer could not be parsed — counted and reported, never guessed). `ChatJudge` asks any LangChain
chat model in both orders to cancel position bias; `ScoreJudge` compares two scores of a scorer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from langchain_core.messages import BaseMessage

from metaaligner_chain.objectives import Objective

@dataclass(frozen=True)
class Task:
    """One pairwise question: is `x` better than `y` for `objective` as an answer to `query`?"""

    query: str
    objective: Objective
    x: str
    y: str


@dataclass(frozen=True)
class Judgement:
    """The outcome from `x`'s side plus what the judge saw (raw answers or scores)."""

    outcome: str
    detail: dict[str, Any] = field(default_factory=dict)


class Judge(Protocol):
    """Anything with a stable `name` (part of the resume key) that judges a batch of tasks."""

    name: str

    def judge(self, tasks: Sequence[Task]) -> list[Judgement]: ...


class ScoreJudge:
    """Win when score(x) − score(y) > margin, loss when < −margin, else tie."""

    def __init__(self, scorer: Any, margin: float | None = None) -> None:
        self.scorer = scorer
        self.margin = scorer.margin if margin is None else margin
        self.name = f"scorer:{scorer.name}"

    def judge(self, tasks: Sequence[Task]) -> list[Judgement]:
        out = []
        for task in tasks:
            sx, sy = self.scorer.score(task.query, task.x), self.scorer.score(task.query, task.y)
            diff = sx - sy
            outcome = "win" if diff > self.margin else "loss" if diff < -self.margin else "tie"
            out.append(Judgement(outcome, {"scores": [sx, sy]}))
        return out


SYSTEM = (
    "You are an impartial judge. You compare two responses to the same query on exactly one "
    "objective and ignore every other quality of the responses, including their order and length "
    "unless the objective is about length."
)
TEMPLATE = """Objective: {objective}

Query:
{query}

[Response A]
{a}
[End of Response A]

[Response B]
{b}
[End of Response B]

Which response better satisfies the objective? If they satisfy it equally well, say tie.
Explain in one or two sentences, then end with a last line that is exactly one of:
Verdict: A
Verdict: B
Verdict: tie"""

_VERDICT_LINE = re.compile(
    r"verdict\W{0,4}(?:is\W{0,3})?(?:response\s+)?(a|b|tie|equal|draw)\b", re.IGNORECASE
)
_BRACKETED = re.compile(r"\[\[\s*(a|b|c|tie)\s*\]\]", re.IGNORECASE)
_BARE = re.compile(
    r"^\W*(?:response\s+)?(a|b|tie|equal|draw)\W*$", re.IGNORECASE
)
_CANON = {"a": "A", "b": "B", "tie": "tie", "equal": "tie", "draw": "tie", "c": "tie"}


def parse_verdict(answer: str) -> str | None:
    """"A", "B" or "tie" from a judge's answer; None when no clear verdict is present.

    Accepts the asked-for last line ("Verdict: B", "**Verdict:** tie"), MT-Bench brackets
    ("[[A]]", "[[C]]" = tie) and a bare answer ("B", "Response A."). The *last* verdict line wins,
    so reasoning that mentions a verdict before the final one does not confuse the parse.
    """
    for pattern in (_VERDICT_LINE, _BRACKETED):
        found = pattern.findall(answer)
        if found:
            return _CANON[found[-1].lower()]
    bare = _BARE.match(answer.strip())
    return _CANON[bare.group(1).lower()] if bare else None


def combine_orders(x_first: str | None, y_first: str | None) -> str:
    """Outcome for `x` from the verdict with x shown as A and the verdict with x shown as B.

    Each order votes +1 (x better), 0 (tie) or −1; the sign of the sum decides. So a verdict
    that follows the position (A then A) cancels to a tie, and one tie plus one win is a win.
    Either answer unparseable → "invalid".
    """
    if x_first is None or y_first is None:
        return "invalid"
    vote = {"A": 1, "tie": 0, "B": -1}[x_first] - {"A": 1, "tie": 0, "B": -1}[y_first]
    return "win" if vote > 0 else "loss" if vote < 0 else "tie"


class ChatJudge:
    """A LangChain chat model asked pairwise, in both orders, with the objective's description."""

    def __init__(self, model: Any, name: str | None = None, max_concurrency: int = 4) -> None:
        self.model = model
        self.name = "chat:" + (name or _model_name(model))
        self.max_concurrency = max_concurrency

    def _messages(self, task: Task, a: str, b: str) -> list[tuple[str, str]]:
        text = TEMPLATE.format(objective=task.objective.description, query=task.query, a=a, b=b)
        return [("system", SYSTEM), ("human", text)]

    def judge(self, tasks: Sequence[Task]) -> list[Judgement]:
        prompts = []
        for task in tasks:
            prompts += [self._messages(task, task.x, task.y), self._messages(task, task.y, task.x)]
        replies = self.model.batch(prompts, config={"max_concurrency": self.max_concurrency})
        answers = [reply.text if isinstance(reply, BaseMessage) else str(reply) for reply in replies]
        out = []
        for i in range(len(tasks)):
            x_first, y_first = answers[2 * i], answers[2 * i + 1]
            verdicts = [parse_verdict(x_first), parse_verdict(y_first)]
            out.append(
                Judgement(
                    combine_orders(*verdicts),
                    {"answers": [x_first[-2000:], y_first[-2000:]], "verdicts": verdicts},
                )
            )
        return out


def _model_name(model: Any) -> str:
    for attr in ("model_name", "model", "model_id"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(model).__name__


def build_judges(
    objectives: Sequence[Objective],
    judge: Any = "offline",
    scorers: Mapping[str, Any] | None = None,
) -> dict[str, Judge]:
    """One judge per objective key.

    `judge` is "offline" (the built-in scorer serving each objective), a "provider:model" string
    (via `langchain.chat_models.init_chat_model`), a chat model or a `Judge` for every objective;
    or a mapping from objective key to one of those (objectives left out are "offline").
    `scorers` maps objective keys to a Hugging Face reward/classifier model (path or hub id) or a
    scorer object, and wins over `judge`. Keys may be aliases ("humor" for "humour").
    """
    per_objective = _by_key(judge, objectives, "judge") if isinstance(judge, Mapping) else {}
    default = "offline" if isinstance(judge, Mapping) else judge
    scorers = _by_key(scorers or {}, objectives, "scorer")
    made: dict[int | str, Judge] = {}  # one judge object per spec, shared across objectives
    judges: dict[str, Judge] = {}
    for objective in objectives:
        if objective.key in scorers:
            judges[objective.key] = _judge_for(objective, scorers[objective.key], made, True)
        else:
            spec = per_objective.get(objective.key, default)
            judges[objective.key] = _judge_for(objective, spec, made, False)
    return judges


def _by_key(specs: Mapping[str, Any], objectives: Sequence[Objective], flag: str) -> dict:
    from metaaligner_chain.objectives import ALIASES, normalize_key

    keys = [o.key for o in objectives]
    found = {}
    for name, spec in specs.items():
        key = ALIASES.get(normalize_key(name), normalize_key(name))
        if key not in keys:
            raise ValueError(
                f"`--{flag}` names objective {name!r} but the objectives evaluated are "
                f"{', '.join(keys)}; write `--{flag} objective=MODEL` with one of them."
            )
        found[key] = spec
    return found


def _judge_for(objective: Objective, spec: Any, made: dict, hf: bool) -> Judge:
    from trainer.evaluate.scorers import BUILTIN, HFScorer

    if spec == "offline":
        if objective.key not in BUILTIN:
            raise ValueError(
                f"objective {objective.key!r} has no built-in offline scorer (they serve "
                f"{', '.join(BUILTIN)}). Pass `--judge provider:model` (a chat model judge) or "
                f"`--scorer {objective.key}=MODEL` (a Hugging Face reward/classifier model)."
            )
        spec = BUILTIN[objective.key]
    cache_key = spec if isinstance(spec, str) else id(spec)
    if cache_key not in made:
        made[cache_key] = ScoreJudge(HFScorer(spec)) if hf and isinstance(spec, str) else (
            _as_judge(spec)
        )
    return made[cache_key]


def _as_judge(spec: Any) -> Judge:
    if isinstance(spec, str):
        if ":" not in spec:
            raise ValueError(
                f"`judge` is {spec!r}; pass 'offline' or a chat model as 'provider:model', "
                "e.g. 'openai:gpt-4o' or 'ollama:llama3.1'."
            )
        from langchain.chat_models import init_chat_model

        return ChatJudge(init_chat_model(spec, temperature=0), name=spec)
    if hasattr(spec, "judge") and hasattr(spec, "name"):
        return spec
    if hasattr(spec, "score") and hasattr(spec, "margin"):
        return ScoreJudge(spec)
    if hasattr(spec, "batch"):
        return ChatJudge(spec)
    raise TypeError(
        f"judge {spec!r} is a {type(spec).__name__}; pass 'offline', 'provider:model', a "
        "LangChain chat model, a scorer (with .score and .margin) or a Judge (with .judge)."
    )
