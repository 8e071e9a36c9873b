"""A cap on each generator kind's share of the distilled set, so no answer shape dominates what a model learns.

A rule engine run on real text can make a third of its pairs from one rule (percentages, say); a model tuned on
that learns to answer everything with a percentage. ``cap_kind_shares`` keeps at most a share ``s`` of the set
for each kind (``meta.generator``: "rules:percent", "spans:person", "llm", …) and drops the surplus.

The share is ``s = max(max_share, 1 / n_kinds)``: with few kinds a 25 % cap would throw most of the data away,
so the cap never goes below a uniform share over the kinds present. The cap is on the share of the *kept* set:
the largest count ``c`` with ``c <= s * (sum of min(count_k, c))`` over the kinds, but never below ``N / n_kinds``
(``N`` the size before the cap), which a uniform split of the input would allow. Which pairs of a capped kind
stay is deterministic and independent of input order: the ``c`` with the smallest hash of (seed, id).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from typing import Any


# Answer shapes: what a model would learn to answer with. Rules and spans name the same shape differently
# ("rules:date", "spans:year", "rules:deadline" are all a time), and a cap per generator name let times and
# numbers together make half of a real corpus's pairs.
ANSWER_SHAPES = {
    "time": ("date", "year", "deadline", "time", "period"),
    "quantity": ("number", "count", "percent", "amount", "quantity"),
    # entities by what they name: the kinds (names, organisations, places, terms) — one "entity" shape
    # held half of an encyclopedic corpus's pairs and the cap threw most of them away
    "person": ("person",),
    "place": ("place",),
    "organisation": ("org",),
    "name": ("name", "term", "entity"),
    "definition": ("definition",),
    "rule": ("obligation", "prohibition", "condition", "reference", "article"),
    "clause": ("cloze", "cause", "list", "clause"),
}
_SHAPE_OF = {kind: shape for shape, kinds in ANSWER_SHAPES.items() for kind in kinds}


def kind_of_example(example: dict[str, Any]) -> str:
    """The kind a cap applies to: the answer shape of the example's generator kind ("rules:percent" and
    "spans:number" are both a quantity); generators without kinds ("llm") are their own."""
    generator = str((example.get("meta") or {}).get("generator") or "unknown")
    kind = generator.split(":", 1)[-1]
    return _SHAPE_OF.get(kind, generator)


def kind_cap(counts: dict[str, int], max_share: float) -> int | None:
    """The most examples any one kind may keep (None: no cap applies)."""
    n_kinds = len(counts)
    total = sum(counts.values())
    if n_kinds <= 1 or total == 0 or max_share >= 1:
        return None
    share = max(max_share, 1.0 / n_kinds)
    floor = math.ceil(total / n_kinds)
    # sum(min(count, c)) / c does not grow with c, so the counts c with c <= share * sum(min(count, c)) (the kept
    # set's share of a capped kind is at most ``share``) are 1..c*: find c* by bisection.
    lo, hi = 1, max(counts.values())
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if mid <= share * sum(min(v, mid) for v in counts.values()) + 1e-9:
            lo = mid
        else:
            hi = mid - 1
    cap = max(lo, floor)
    return cap if cap < max(counts.values()) else None


def cap_kind_shares(examples: list[dict[str, Any]], max_share: float, seed: int = 0
                    ) -> tuple[list[dict[str, Any]], Counter]:
    """``examples`` without the surplus of any kind above its share (order of the kept ones preserved) and a
    Counter of dropped examples per kind."""
    counts = Counter(kind_of_example(e) for e in examples)
    cap = kind_cap(dict(counts), max_share)
    dropped: Counter = Counter()
    if cap is None:
        return list(examples), dropped
    keep: set[int] = set()
    for kind, count in counts.items():
        members = [i for i, e in enumerate(examples) if kind_of_example(e) == kind]
        if count > cap:
            members.sort(key=lambda i: (_rank(examples[i], seed), i))
            dropped[kind] = count - cap
            members = members[:cap]
        keep.update(members)
    return [e for i, e in enumerate(examples) if i in keep], dropped


def _rank(example: dict[str, Any], seed: int) -> str:
    return hashlib.sha1(f"{seed}\x1f{example.get('id', '')}".encode("utf-8")).hexdigest()


__all__ = ["cap_kind_shares", "kind_cap", "kind_of_example"]
