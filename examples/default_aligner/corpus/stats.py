"""Check the corpus and the held-out set, and count what the data card reports.

    python examples/default_aligner/corpus/stats.py      # writes corpus/stats.json, prints tables

Counts the training parts (train/), each held-out set (examples/eval/heldout*/) and the
topic-split validation set (examples/default_aligner/validation-topics/), and reports each
evaluation set's query nearest to a training query and to the other sets' queries.

Fails (exit 1) on any item that breaks the rules of GUIDELINES.md, naming its file and line.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from trainer.data.corpus import Item, distinct_ngrams, load, nearest, openings

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
TRAINED = ("harmlessness", "helpfulness", "factuality", "readability", "length", "humour")
UNSEEN = ("empathy", "fairness")
HELD_OUT = {"heldout": ROOT / "examples" / "eval" / "heldout",
            "heldout_v2": ROOT / "examples" / "eval" / "heldout-v2",
            "validation_topics": HERE.parent / "validation-topics"}


def describe(items: list[Item]) -> dict:
    """Counts per kind, source, objective (named / needing the fix), flaw, objectives per item."""
    flat = [i for i in items if i.kind != "chain"]
    chains = [i for i in items if i.kind == "chain"]
    rewrites = [i.row["rewrite"] for i in flat if i.kind == "rewrite"]
    opening = openings(rewrites).most_common(5)
    return {
        "items": len(items),
        "kinds": dict(Counter(i.kind for i in items)),
        "sources": dict(Counter(i.row.get("source", "written").split(":")[0] for i in items)),
        "policy_styles": dict(Counter(i.row["source"] for i in items
                                      if i.row.get("source", "written") != "written")),
        "fixes": dict(Counter(k for i in flat for k in i.row["fixes"]).most_common()),
        "named": dict(Counter(k for i in flat for k in i.row["objectives"]).most_common()),
        "chain_objectives": dict(Counter(k for i in chains
                                         for k in i.row["responses"][0]["scores"]).most_common()),
        "objectives_per_item": dict(sorted(Counter(len(i.row["objectives"]) for i in flat).items())),
        "flaws": dict(Counter(f for i in flat for f in i.row.get("flaws", [])).most_common()),
        "with_context": sum(bool(i.row.get("context")) for i in items),
        "clean_share": round(sum(i.kind == "clean" for i in items) / len(items), 3),
        "topics": len({i.row.get("topic") for i in items}),
        "distinct_3gram_ratio_rewrites": round(distinct_ngrams(rewrites), 3),
        "most_common_rewrite_openings": opening,
        "words": {
            "answer_median": _median([len(i.row["answer"].split()) for i in flat]),
            "rewrite_median": _median([len(r.split()) for r in rewrites]),
        },
    }


def _median(values: list[int]) -> int:
    return sorted(values)[len(values) // 2] if values else 0


def main() -> int:
    try:
        train = load(sorted((HERE / "train").glob("*.jsonl")), TRAINED)
        held = {name: load(sorted(folder.glob("*.jsonl")), TRAINED + UNSEEN)
                for name, folder in HELD_OUT.items()}
    except ValueError as err:
        print(err, file=sys.stderr)
        return 1
    unseen_in_train = [i.where for i in train if set(i.row.get("objectives", [])) & set(UNSEEN)]
    train_queries = [i.row["query"] for i in train]
    duplicates = [q for q, n in Counter(train_queries).items() if n > 1]
    stats = {
        "train": describe(train),
        **{name: describe(items) for name, items in held.items()},
        "duplicate_train_queries": duplicates,
        "unseen_objectives_in_train": unseen_in_train,
    }
    for name, items in held.items():
        ratio, query, other = nearest([i.row["query"] for i in items], train_queries)
        stats[f"nearest_{name}_train_query"] = {"similarity": round(ratio, 3), name: query, "train": other}
    names = list(held)
    for i, name in enumerate(names):
        for earlier in names[:i]:
            ratio, query, other = nearest([x.row["query"] for x in held[name]],
                                          [x.row["query"] for x in held[earlier]])
            stats[f"nearest_{name}_{earlier}_query"] = {"similarity": round(ratio, 3), name: query,
                                                        earlier: other}
    (HERE / "stats.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(stats, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
