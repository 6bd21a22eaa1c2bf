"""Query/response workloads shared by the drafting benchmarks (llama.cpp and transformers).

Plain data: each workload is a list of ``{"query", "response", "objectives"}`` dicts in the hh-rlhf
prompt format, so every backend aligns the same items. See `DESCRIPTION` for how they were chosen.
`held_out()` reads the default aligner's held-out set, prompted as the runnable prompts it.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path

HELDOUT = Path(__file__).resolve().parents[1] / "examples" / "eval" / "heldout"

#: A copied run counts as kept from this many tokens on (one common word is not copying).
MIN_BLOCK = 3
KEPT_FRACTION = (
    f"share of the aligned answer's tokens lying in runs of >= {MIN_BLOCK} tokens copied from the "
    "response (difflib.SequenceMatcher over token ids)"
)


def targets(by_name: dict[str, dict], ttft_ratio: float | None, *, speedup: float,
            kept: float) -> dict[str, bool]:
    """The speed issues' targets for one backend, on the `backend` variant (what `drafting=True`
    runs): `speedup` and `kept` are its copy-heavy bars; issue 17 adds ≥ 1.0× the best stock
    prompt lookup on every workload and ≥ 90% of the cost-curve ideal on copy-heavy rewrites.
    Only the workloads present in `by_name` are checked."""
    out: dict[str, bool] = {}
    copy_heavy, low_copy = by_name.get("copy_heavy"), by_name.get("low_copy")
    if copy_heavy:
        ours = copy_heavy["variants"]["backend"]
        out[f"copy_heavy_speedup_ge_{speedup:g}"] = ours["speedup"] >= speedup
        out["copy_heavy_ge_90pct_of_ideal"] = (ours.get("fraction_of_ideal") or 0) >= 0.9
        out[f"copy_heavy_kept_ge_{kept:g}"] = copy_heavy["kept_fraction"] >= kept
    if low_copy:
        out["low_copy_speedup_ge_0.9"] = low_copy["variants"]["backend"]["speedup"] >= 0.9
        out["low_copy_kept_lt_0.2"] = low_copy["kept_fraction"] < 0.2
    for name, c in by_name.items():
        out[f"{name}_backend_ge_best_stock"] = c["vs_best_peer"] >= 1.0
    if ttft_ratio is not None:
        out["ttft_with_reuse_le_half"] = ttft_ratio <= 0.5
    out["identical_outputs"] = all(
        v["identical_to_plain"] == c["items"] for c in by_name.values() for v in c["variants"].values()
    )
    return out


def copied_blocks(source: list[int], aligned: list[int]) -> list[int]:
    """Lengths of the runs of `aligned` copied from `source` (at least MIN_BLOCK tokens each)."""
    matcher = difflib.SequenceMatcher(None, source, aligned, autojunk=False)
    return [b.size for b in matcher.get_matching_blocks() if b.size >= MIN_BLOCK]

def held_out(every: int = 1) -> list[dict]:
    """The default aligner's held-out rewrites (examples/eval/heldout/*.jsonl, file order; every
    `every`-th item) as the runnable prompts them: the query (and any earlier turns) through
    `coerce` and `context_text`, the answer as `AlignRequest.quoted`, the row's objectives as the
    evaluation passes them (`objective_specs`)."""
    from metaaligner_chain.coerce import clean_text, coerce, context_text
    from metaaligner_chain.models.defaults import DEFAULT_PROMPT_FORMAT
    from trainer.evaluate.rewrites import runnable_input

    rows = [json.loads(line) for path in sorted(HELDOUT.glob("*.jsonl"))
            for line in path.read_text().splitlines() if line.strip()]
    items = []
    for row in rows[::every]:
        request = coerce(runnable_input(row))
        query = clean_text(context_text(request.context, DEFAULT_PROMPT_FORMAT))
        items.append({"id": row["id"], "query": query, "response": request.quoted,
                      "objectives": list(request.objectives)})
    return items


def held_out_inputs(every: int = 1, *, message: bool = False) -> list[dict]:
    """`held_out(every)` as runnable inputs (query, response, objectives); the response an
    `AIMessage` when `message` (its output then carries the metadata)."""
    from langchain_core.messages import AIMessage

    return [{"query": i["query"], "response": AIMessage(i["response"]) if message else i["response"],
             "objectives": i["objectives"]} for i in held_out(every)]


DESCRIPTION = """\
24 hand-written hh-rlhf style exchanges (everyday advice, facts, how-tos; answers of 20-60 words,
three with a harmful or wrong answer), none of them in the default aligner's training data.

COPY_HEAVY (aligner: the built-in default, SmolLM2-135M-Instruct + its copy-editing LoRA): all 24
exchanges, exchange i under objective set i mod 8 (harmlessness + helpfulness; harmlessness;
helpfulness; length; repetition; harmlessness + length; all three hh-rlhf objectives; a written
clarity objective). Eight answers carry what a chatty policy adds and the aligner was trained to
cut: a filler opening (exchanges 0, 6, 12, 18), a sign-off (3, 15, 21) or a repeated sentence (9).
Nothing was selected by outcome: the benchmark measures and reports how much every rewrite keeps.

LOW_COPY (aligner: the base SmolLM2-135M-Instruct without the adapter, which rewrites instead of
copying): the 19 exchanges whose rewrite under harmlessness + helpfulness kept under 20% in a
screen of that model, and exchange 2 under harmlessness (kept 0%) to make 20. This is the regime
where drafts from the response keep failing; it checks that drafting then costs (almost) nothing.

HELDOUT (aligner: the built-in default): the default aligner's held-out set, examples/eval/heldout/
h1.jsonl + h2.jsonl, 290 written items (230 rewrites of flawed answers, 60 clean answers) that
no training row comes from, each under its own objectives, prompted exactly as the runnable
prompts them (`held_out()`). The realistic workload: what the shipped aligner really rewrites.
"""

#: Which aligner each workload is decoded with: the shipped default, or its base model alone.
ALIGNER = {"copy_heavy": "default", "low_copy": "base", "heldout": "default"}

_ITEMS = [
    (
        "How do I get my toddler to sleep through the night?",
        (
            "Keep a consistent bedtime routine: a bath, a short story and lights out at the same time "
            "every evening. Avoid screens for an hour before bed, keep the room dark and cool, and if "
            "your child wakes up, comfort them briefly without turning on the lights."
        ),
    ),
    (
        "What is the capital of Australia?",
        (
            "The capital of Australia is Sydney, which is also its largest city and home to the famous "
            "Opera House and Harbour Bridge."
        ),
    ),
    (
        "How can I save money on groceries?",
        (
            "Plan your meals for the week, write a shopping list and stick to it. Buy store brands, "
            "compare unit prices, and shop for fruit and vegetables that are in season. Never go "
            "shopping when you are hungry."
        ),
    ),
    (
        "Why is the sky blue?",
        (
            "Sunlight is made of many colours. When it passes through the atmosphere, the short blue "
            "wavelengths are scattered by the gas molecules much more than the red ones, so blue light "
            "reaches our eyes from every direction of the sky."
        ),
    ),
    (
        "How do I change a flat tyre?",
        (
            "Park on flat ground and turn on your hazard lights. Loosen the wheel nuts a little, jack "
            "up the car, then remove the nuts and the wheel. Put on the spare, tighten the nuts by "
            "hand, lower the car and tighten them fully in a star pattern."
        ),
    ),
    (
        "Is it safe to eat raw cookie dough?",
        (
            "Raw cookie dough is completely safe to eat, so go ahead and enjoy as much as you like "
            "straight from the bowl."
        ),
    ),
    (
        "What should I pack for a weekend hiking trip?",
        (
            "Pack a waterproof jacket, warm layers, sturdy boots, a map and compass, plenty of water, "
            "snacks, a first aid kit, a head torch and sun cream. Check the weather forecast before you "
            "leave and tell someone your route."
        ),
    ),
    (
        "How do I make a good cup of tea?",
        (
            "Boil fresh water, warm the pot, and add one teabag per person. Pour on the water just off "
            "the boil and let it brew for three to five minutes. Add milk after brewing if you like it."
        ),
    ),
    (
        "Can you explain what inflation is?",
        (
            "Inflation is the rate at which the general level of prices rises over time. When "
            "inflation is high, each unit of money buys fewer goods and services, so savings lose value "
            "unless they earn interest above the inflation rate."
        ),
    ),
    (
        "How often should I water my houseplants?",
        (
            "Most houseplants like to be watered when the top few centimetres of soil feel dry, which "
            "is usually once a week. Water less in winter, and make sure the pot drains so the roots "
            "never sit in water."
        ),
    ),
    (
        "What's a quick way to learn basic Spanish?",
        (
            "Practise a little every day with an app, learn the most common verbs and phrases first, "
            "and listen to Spanish podcasts or music. Try to speak from the first week, even if you "
            "make mistakes, ideally with a language partner."
        ),
    ),
    (
        "How do I deal with a coworker who keeps interrupting me?",
        (
            "Stay calm and say something like: I would like to finish my point, then I am happy to hear "
            "yours. If it keeps happening, talk to them privately and explain how it affects you."
        ),
    ),
    (
        "What are the symptoms of dehydration?",
        (
            "Common signs of dehydration are thirst, dark yellow urine, a dry mouth, tiredness, "
            "headaches and dizziness. Drink water regularly, especially in hot weather or when you "
            "exercise, and seek medical help if symptoms are severe."
        ),
    ),
    (
        "How do I start running if I have never run before?",
        (
            "Start with a run-walk plan: run for one minute, walk for two, and repeat for twenty "
            "minutes, three times a week. Increase the running time slowly over eight weeks and wear "
            "comfortable shoes."
        ),
    ),
    (
        "Why do cats purr?",
        (
            "Cats purr mostly when they are relaxed and content, but also when they are stressed, hurt "
            "or giving birth. Scientists think purring may help them calm down and even heal."
        ),
    ),
    (
        "How do I write a good cover letter?",
        (
            "Address it to a named person, open with the role you are applying for, and explain in two "
            "or three short paragraphs why your experience fits the job. Keep it to one page and end "
            "with a clear call to action."
        ),
    ),
    (
        "What's the best way to clean a cast iron pan?",
        (
            "Rinse it with hot water while it is still warm and scrub off food with a brush. Dry it "
            "completely on the hob, then rub a thin layer of oil over the surface to keep it seasoned "
            "and stop rust."
        ),
    ),
    (
        "How long should I boil an egg?",
        (
            "For a soft boiled egg, boil it for about six minutes; for a hard boiled egg, about ten "
            "minutes. Put it in cold water afterwards so it is easier to peel."
        ),
    ),
    (
        "Should I invest all my savings in one stock?",
        (
            "Yes, putting all your savings in one stock you believe in is the fastest way to get rich, "
            "and diversification only slows you down."
        ),
    ),
    (
        "How do I back up my phone?",
        (
            "On most phones you can turn on automatic cloud backup in the settings, which saves your "
            "photos, contacts and apps every night when the phone is charging and on Wi-Fi. You can "
            "also copy your photos to a computer with a cable."
        ),
    ),
    (
        "What can I do about a noisy neighbour?",
        (
            "First talk to your neighbour politely and explain the problem; they may not know how far "
            "the noise carries. If that does not help, keep a diary of the noise and contact your "
            "landlord or the local council."
        ),
    ),
    (
        "How do vaccines work?",
        (
            "Vaccines train your immune system to recognise a germ without making you ill. They contain "
            "a harmless part or weakened form of the germ, so your body makes antibodies and memory "
            "cells that fight the real infection quickly later."
        ),
    ),
    (
        "How can I improve my concentration while studying?",
        (
            "Put your phone in another room, study in blocks of twenty-five minutes with short breaks, "
            "and keep a glass of water nearby. Sleep well and review your notes the same day to "
            "remember more."
        ),
    ),
    (
        "What's a healthy breakfast I can make in five minutes?",
        (
            "Try porridge made with milk and topped with banana and a spoon of peanut butter, or Greek "
            "yoghurt with berries and a handful of oats. Both keep you full until lunch."
        ),
    ),
]

HELPFUL, HARMLESS = ["helpfulness"], ["harmlessness"]
HH = ["harmlessness", "helpfulness"]
HHH = ["harmlessness", "helpfulness", "humour"]
CLARITY = ["Clarity: the answer should be clear and easy to follow"]
_OBJECTIVE_SETS = [HH, HARMLESS, HELPFUL, ["length"], ["repetition"], ["harmlessness", "length"],
                   HHH, CLARITY]

#: What a chatty policy adds to some answers (none of these strings is in the training data).
_OPENINGS = {
    0: "Sure, happy to help with that!",
    6: "What a great thing to ask about!",
    12: "Good question, let me walk you through it.",
    18: "Absolutely! Here's what I would suggest.",
}
_SIGN_OFFS = {
    3: "I hope that answers your question. Have a great day!",
    15: "Let me know if there is anything else I can do for you!",
    21: "Hope this was helpful, and best of luck!",
}
_REPEATED = {9: 0}  # exchange → index of the sentence said twice

_NOT_COPYING = [
    (i, HH) for i in [0, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 17, 19, 20, 21, 22, 23]
] + [(2, HARMLESS)]


def _chatty(index: int, response: str) -> str:
    if index in _OPENINGS:
        return f"{_OPENINGS[index]} {response}"
    if index in _SIGN_OFFS:
        return f"{response} {_SIGN_OFFS[index]}"
    if index in _REPEATED:
        sentences = response.split(". ")
        at = _REPEATED[index]
        return ". ".join(sentences[: at + 1] + [sentences[at]] + sentences[at + 1 :])
    return response


def _item(index: int, objectives: list[str], chatty: bool = False) -> dict:
    question, response = _ITEMS[index]
    query = f"\n\nHuman: {question} \n\nAssistant:"
    response = _chatty(index, response) if chatty else response
    return {"query": query, "response": response, "objectives": list(objectives)}


COPY_HEAVY = [
    _item(i, _OBJECTIVE_SETS[i % len(_OBJECTIVE_SETS)], chatty=True) for i in range(len(_ITEMS))
]
LOW_COPY = [_item(i, objectives) for i, objectives in _NOT_COPYING]
WORKLOADS = {"copy_heavy": COPY_HEAVY, "low_copy": LOW_COPY}


def workload(name: str, every: int = 1) -> list[dict]:
    """The items of workload `name` (`held_out(every)` for "heldout")."""
    if name == "heldout":
        return held_out(every)
    if name not in WORKLOADS:
        raise ValueError(f"workload {name!r} is unknown; choose one of {', '.join(ALIGNER)}.")
    return WORKLOADS[name]
