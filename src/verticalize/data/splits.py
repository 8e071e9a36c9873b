"""Train/validation/test splits by source document, with the test split drawn from human seed data first.

Examples are grouped so that nothing related can land on both sides of a split: examples from the same source
document (``meta.doc_id``) form one group, and an augmented example joins its parent's group (``meta.parent_id``),
so a variant and its original, or two sibling questions about one passage, always share a split. Seed examples
without a document form a group each. Whole groups are then dealt to splits in a seeded shuffle order, so the
result depends only on the data and ``project.seed``.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from verticalize.data.schema import SPLITS, kind_of


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def group_examples(examples: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Groups that must not be split, keyed by a stable group key, each in input order."""
    uf = _UnionFind()
    for ex in examples:
        meta = ex.get("meta") or {}
        node = f"ex:{ex['id']}"
        uf.find(node)
        if meta.get("doc_id"):
            uf.union(node, f"doc:{meta['doc_id']}")
        if meta.get("parent_id"):
            uf.union(node, f"ex:{meta['parent_id']}")
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ex in examples:
        groups[uf.find(f"ex:{ex['id']}")].append(ex)
    return dict(groups)


@dataclass
class SplitResult:
    splits: dict[str, list[dict[str, Any]]]
    groups: dict[str, int | None] = field(default_factory=dict)  # split -> number of groups (None: user test)
    test_source: str = "drawn"  # drawn | seed-first | user

    def counts(self) -> dict[str, int]:
        return {s: len(v) for s, v in self.splits.items()}


def _shuffled(keys: list[str], rng: random.Random) -> list[str]:
    keys = sorted(keys)
    rng.shuffle(keys)
    return keys


def _take(order: list[str], groups: dict[str, list], target: int, *, at_least_one: bool) -> list[str]:
    """Groups from the front of ``order`` until ``target`` examples are reached (whole groups only).

    A group that would overshoot the target by more than half is passed over for smaller ones further on, so
    one large document does not swallow a split; ``at_least_one`` then falls back to the smallest group.
    """
    taken, size = [], 0
    limit = target * 1.5
    for key in order:
        if size >= target:
            break
        if size + len(groups[key]) > limit:
            continue
        taken.append(key)
        size += len(groups[key])
    if not taken and at_least_one and order:
        taken = [min(order, key=lambda k: len(groups[k]))]
    return taken


def split_examples(examples: list[dict[str, Any]], shares: tuple[float, float, float], seed: int, *,
                   test_examples: list[dict[str, Any]] | None = None,
                   seed_test_max_share: float = 0.5) -> SplitResult:
    """Split ``examples`` by group. ``test_examples`` (a user test file) replaces the drawn test split.

    Without a user test file, the test split is filled from groups holding human seed examples first — at most
    ``seed_test_max_share`` of the seed examples, so seed data also reaches training — and topped up from the
    other groups. Validation is then drawn from what is left; the rest is training.
    """
    train_share, val_share, test_share = shares
    groups = group_examples(examples)
    rng = random.Random(seed)
    order = _shuffled(list(groups), rng)
    total = len(examples)
    test_keys: list[str] = []
    test_source = "user" if test_examples is not None else "drawn"
    enough_groups = len(groups) >= 3
    if test_examples is None and test_share > 0 and groups:
        target = max(1, round(test_share * total))
        seed_keys = [k for k in order if any(kind_of(e) == "seed" for e in groups[k])]
        n_seed = sum(len(groups[k]) for k in seed_keys)
        if seed_keys:
            seed_target = min(target, max(1, int(n_seed * seed_test_max_share)))
            test_keys = _take(seed_keys, groups, seed_target, at_least_one=enough_groups)
            test_source = "seed-first"
        got = sum(len(groups[k]) for k in test_keys)
        if got < target:  # top up from non-seed groups: the cap on seed data holds
            seed_set = set(seed_keys)
            rest = [k for k in order if k not in seed_set]
            test_keys += _take(rest, groups, target - got, at_least_one=enough_groups and not test_keys)
        if len(test_keys) >= len(groups):  # training must never be empty
            test_keys = test_keys[:-1]
    test_set = set(test_keys)
    remaining = [k for k in order if k not in test_set]
    val_keys: list[str] = []
    if val_share > 0 and remaining:
        n_rest = sum(len(groups[k]) for k in remaining)
        target = round(val_share / (train_share + val_share) * n_rest)
        val_keys = _take(remaining, groups, target, at_least_one=enough_groups)
        if len(val_keys) >= len(remaining):  # training must never be empty
            val_keys = val_keys[:-1]
    val_set = set(val_keys)
    train_keys = [k for k in remaining if k not in val_set]
    pick = lambda keys: [ex for k in keys for ex in groups[k]]  # noqa: E731
    splits = {"train": pick(train_keys), "validation": pick(val_keys),
              "test": list(test_examples) if test_examples is not None else pick(test_keys)}
    return SplitResult(splits={s: splits[s] for s in SPLITS},
                       groups={"train": len(train_keys), "validation": len(val_keys),
                               "test": len(test_keys) if test_examples is None else None},
                       test_source=test_source)


def overlap_report(splits: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    """Documents and augmentation families shared between splits (all zero for a correct split)."""
    docs = {s: {(e.get("meta") or {}).get("doc_id") for e in rows} - {None} for s, rows in splits.items()}
    out = {}
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1:]:
            out[f"{a}/{b}"] = len(docs.get(a, set()) & docs.get(b, set()))
    return out
