"""Same tokens before and after a refactor: greedy outputs of the llama.cpp backend at two commits.

Checks out `--before` (default: e8693d4, the last commit before the package and the trainer were
rearranged into rooms) into a temporary git worktree, and runs the same generations with that
tree's `metaaligner_chain` and with this one's, in fresh processes, on the same GGUF (the built-in
default aligner merged to F16): the first `--items` held-out items, each prompt decoded greedily
with drafting off and on. Plain greedy must agree token for token; drafting must equal plain
greedy in each tree. The seconds each tree took are recorded too (one run each, one tree after
the other: a coarse check that nothing got slower, not a benchmark). Writes
`benchmarks/results/same_outputs.json`.

    python -m benchmarks.check_same_outputs [--before REV] [--items 12] [--max-new-tokens 96]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "same_outputs.json"
HELD_OUT = ROOT / "examples" / "eval" / "heldout" / "h1.jsonl"

#: Run inside each tree: only APIs both commits have (`build_prompt`, `resolve`, the backend).
WORKER = """
import json, sys, time
from metaaligner_chain.backends.base import GenerationSettings
from metaaligner_chain.backends.llamacpp import LlamaCppBackend
from metaaligner_chain.objectives import resolve
from metaaligner_chain.prompt import build_prompt

gguf, items, max_new = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
backend = LlamaCppBackend(gguf)
out = {}
for drafting in (False, True):
    settings = GenerationSettings(max_new_tokens=max_new, drafting=drafting)
    texts, start = [], time.perf_counter()
    for item in items:
        prompt = build_prompt(item["query"], item["answer"], resolve(item["objectives"], "hh-rlhf"),
                              prompt_format="hh-rlhf")
        g = backend.generate([prompt], settings, responses=[item["answer"]])[0]
        texts.append([g.text, g.finish_reason, g.completion_tokens])
    name = "drafting" if drafting else "plain"
    out[name], out[name + "_seconds"] = texts, round(time.perf_counter() - start, 2)
print(json.dumps(out))
"""


def run_tree(tree: Path, gguf: Path, items: list[dict], max_new: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-c", WORKER, str(gguf), json.dumps(items), str(max_new)],
        env=env, cwd=tree, capture_output=True, text=True, check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="e8693d4")
    parser.add_argument("--items", type=int, default=12)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    args = parser.parse_args()

    from metaaligner_chain.models.defaults import ADAPTER_METADATA, default_aligner_gguf

    gguf = default_aligner_gguf()
    rows = [json.loads(line) for line in HELD_OUT.read_text().splitlines() if line.strip()]
    trained = set(json.loads(ADAPTER_METADATA.read_text())["objectives"])  # ones both trees know
    items = [{"query": r["query"], "answer": r["answer"],
              "objectives": [o for o in r["objectives"] if o in trained] or ["helpfulness"]}
             for r in rows[: args.items]]
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), args.before],
                       cwd=ROOT, check=True, capture_output=True)
        try:
            before = run_tree(tree, gguf, items, args.max_new_tokens)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT,
                           check=False, capture_output=True)
    after = run_tree(ROOT, gguf, items, args.max_new_tokens)
    same = lambda a, b: sum(x == y for x, y in zip(a, b))  # noqa: E731
    result = {
        "check": "greedy llama.cpp outputs before and after a refactor",
        "command": "python -m benchmarks.check_same_outputs " + " ".join(sys.argv[1:]),
        "before": args.before,
        "after": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip(),
        "model": gguf.name,
        "items": len(items),
        "plain_identical_before_after": same(before["plain"], after["plain"]),
        "drafting_identical_before_after": same(before["drafting"], after["drafting"]),
        "drafting_equals_plain_before": same(before["plain"], before["drafting"]),
        "drafting_equals_plain_after": same(after["plain"], after["drafting"]),
        # one run each, trees one after the other: a coarse check that nothing got slower
        "seconds": {"before": {k: before[f"{k}_seconds"] for k in ("plain", "drafting")},
                    "after": {k: after[f"{k}_seconds"] for k in ("plain", "drafting")}},
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
