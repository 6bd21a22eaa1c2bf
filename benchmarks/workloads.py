"""Query/response workloads shared by the drafting benchmarks (llama.cpp and transformers).

Plain data: each workload is a list of ``{"query", "response", "objectives"}`` dicts in the hh-rlhf
prompt format, so every backend aligns the same items. See `DESCRIPTION` for how they were chosen.
"""

from __future__ import annotations

DESCRIPTION = """\
24 hand-written hh-rlhf style exchanges (everyday advice, facts, how-tos; answers of 20-60 words,
three with a harmful or wrong answer an aligner should fix) were aligned by the untrained default
aligner (SmolLM2-135M-Instruct Q4_1, greedy, 100-128 new tokens) under seven objective sets:
helpfulness; harmlessness; humour; harmlessness + helpfulness; all three; and two written ones
(accuracy, clarity). For every one of the 168 rewrites we measured the kept fraction (share of the
aligned tokens lying in runs of 3+ tokens copied from the response). The aligner decides for
itself whether to copy: most rewrites are comments ("The answer is: ...") that keep nothing, a
minority reproduce the answer after a short preface ("The answer is: <answer>").

COPY_HEAVY: the 20 (exchange, objective set) pairs with the highest kept fraction in that screen
(0.67-0.91; the preface keeps even a perfect copy near 0.9). LOW_COPY: the 19 exchanges whose
rewrite under harmlessness + helpfulness kept under 20% in the screen, and exchange 2 under
harmlessness (kept 0%) to make 20. Objective
wording was never tuned per item; items were selected, so these workloads describe the regimes
(copying / not copying), not how often the default aligner copies. The benchmark measures the
kept fraction of every item again and reports it.
"""

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

HELPFUL, HARMLESS, HUMOUR = ["helpfulness"], ["harmlessness"], ["humour"]
HH = ["harmlessness", "helpfulness"]
HHH = ["harmlessness", "helpfulness", "humour"]
CLARITY = ["Clarity: the answer should be clear and easy to follow"]

# (index into _ITEMS, objectives), chosen as DESCRIPTION says.
_COPYING = [
    (7, HUMOUR),
    (18, HUMOUR),
    (18, HHH),
    (1, HUMOUR),
    (1, HH),
    (14, HARMLESS),
    (9, HARMLESS),
    (9, HUMOUR),
    (9, HH),
    (16, HELPFUL),
    (19, HELPFUL),
    (19, HUMOUR),
    (7, HELPFUL),
    (8, HELPFUL),
    (14, HELPFUL),
    (14, HHH),
    (9, HHH),
    (13, HUMOUR),
    (13, HELPFUL),
    (19, CLARITY),
]
_NOT_COPYING = [
    (i, HH) for i in [0, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 17, 19, 20, 21, 22, 23]
] + [(2, HARMLESS)]


def _item(index: int, objectives: list[str]) -> dict:
    question, response = _ITEMS[index]
    query = f"\n\nHuman: {question} \n\nAssistant:"
    return {"query": query, "response": response, "objectives": list(objectives)}


COPY_HEAVY = [_item(i, objectives) for i, objectives in _COPYING]
LOW_COPY = [_item(i, objectives) for i, objectives in _NOT_COPYING]
WORKLOADS = {"copy_heavy": COPY_HEAVY, "low_copy": LOW_COPY}
