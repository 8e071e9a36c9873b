"""General-skill examples mixed into the training split (``data.general_mix``), against forgetting.

The examples ship with the project (``data/general/general_sft.jsonl``: short facts, simple instructions,
arithmetic, refusals of harmful requests and small talk, in English and Chinese), written for it and disjoint
from the forgetting probe the ladder scores (evaluate/probes/general.jsonl; a test checks it), so the probe still
measures what the adapter kept rather than what it was shown. They stay closed-book (no passages) and go into
the training split only: validation and test stay the domain's.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from importlib import resources
from typing import Any

from verticalize.data.schema import make_example

GENERAL_FILE = ("data", "general", "general_sft.jsonl")


def load_general_examples() -> list[dict[str, Any]]:
    path = resources.files("verticalize").joinpath(*GENERAL_FILE)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    out = []
    for row in rows:
        user = next(m["content"] for m in row["messages"] if m["role"] == "user")
        answer = next(m["content"] for m in row["messages"] if m["role"] == "assistant")
        out.append(make_example(user, answer, kind="seed", generator="general_mix", source="verticalize:general_sft",
                                id=f"general-{row['id']}", general_kind=row.get("kind"), lang=row.get("lang")))
    return out


def mix_general(train: list[dict[str, Any]], share: float, seed: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``train`` with general examples added so that they make ``share`` of the result (as near as the shipped
    set allows); a seeded sample, the same on a rebuild."""
    if share <= 0:
        return train, {"share": 0.0, "added": 0}
    pool = load_general_examples()
    wanted = round(share * len(train) / (1 - share))
    chosen = random.Random(seed).sample(pool, min(wanted, len(pool)))
    report = {"share": share, "wanted": wanted, "added": len(chosen), "available": len(pool),
              "by_kind": dict(Counter(str(e["meta"].get("general_kind")) for e in chosen))}
    if wanted > len(pool):
        report["note"] = f"only {len(pool)} general examples ship with verticalize; {wanted} were asked for"
    mixed = train + chosen
    random.Random(seed + 1).shuffle(mixed)
    return mixed, report

