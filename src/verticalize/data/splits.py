"""Train/validation/test splits by source document, with the test split drawn from human seed data first.

Examples are grouped so that nothing related can land on both sides of a split: examples from the same source
document (``meta.doc_id``) form one group, and an augmented example joins its parent's group (``meta.parent_id``),
so a variant and its original, or two sibling questions about one passage, always share a split. Seed examples
without a document form a group each. Whole groups are then dealt to splits in a seeded shuffle order, so the
result depends only on the data and ``project.seed``.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
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


def group_examples(examples: list[dict[str, Any]], by_document: bool = True) -> dict[str, list[dict[str, Any]]]:
    """Groups that must not be split, keyed by a stable group key, each in input order. ``by_document=False``
    keeps only augmentation families together (pairs of one document may then land in different splits)."""
    uf = _UnionFind()
    for ex in examples:
        meta = ex.get("meta") or {}
        node = f"ex:{ex['id']}"
        uf.find(node)
        if by_document and meta.get("doc_id"):
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
                   test_examples: list[dict[str, Any]] | None = None, seed_test_max_share: float = 0.5,
                   stratify_by_label: bool = False) -> SplitResult:
    """Split ``examples`` by group. ``test_examples`` (a user test file) replaces the drawn test split.

    Without a user test file, the test split is filled from groups holding human seed examples first — at most
    ``seed_test_max_share`` of the seed examples, so seed data also reaches training — and topped up from the
    other groups. Validation is then drawn from what is left; the rest is training.

    ``stratify_by_label`` (a classification dataset): groups are dealt label by label, so each label's share of
    every split follows ``shares``, and a label with two or more groups has at least one in training and one in
    the test split (a label with a single group goes to training).
    """
    # With the user's own test file every document must reach training (the test questions ask about all of
    # them): validation is then held out pair by pair instead of document by document.
    groups = group_examples(examples, by_document=test_examples is None)
    order = _shuffled(list(groups), random.Random(seed))
    draw_test = test_examples is None and shares[2] > 0
    strata = _label_strata(order, groups) if stratify_by_label else [order]
    test_keys: list[str] = []
    seed_first = False
    for stratum in strata:
        if not draw_test or not stratum:
            continue
        n = sum(len(groups[k]) for k in stratum)
        at_least_one = len(stratum) >= (2 if stratify_by_label else 3)
        keys, from_seed = _draw_test(stratum, groups, max(1, round(shares[2] * n)), seed_test_max_share,
                                     at_least_one=at_least_one)
        test_keys += keys
        seed_first = seed_first or from_seed
    test_set = set(test_keys)
    remaining = [[k for k in stratum if k not in test_set] for stratum in strata]
    val_keys = _draw_validation(remaining, groups, shares, at_least_one=len(groups) >= 3)
    # Seed groups lead the test split (an evaluation capped at its first N rows measures human questions).
    position = {k: i for i, k in enumerate(order)}
    test_keys.sort(key=lambda k: (not any(kind_of(e) == "seed" for e in groups[k]), position[k]))
    val_keys.sort(key=position.__getitem__)
    val_set = set(val_keys)
    train_keys = [k for k in order if k not in test_set and k not in val_set]
    pick = lambda keys: [ex for k in keys for ex in groups[k]]  # noqa: E731
    splits = {"train": pick(train_keys), "validation": pick(val_keys),
              "test": list(test_examples) if test_examples is not None else pick(test_keys)}
    test_source = "user" if test_examples is not None else "seed-first" if seed_first else "drawn"
    return SplitResult(splits={s: splits[s] for s in SPLITS},
                       groups={"train": len(train_keys), "validation": len(val_keys),
                               "test": len(test_keys) if test_examples is None else None},
                       test_source=test_source)


def _label_strata(order: list[str], groups: dict[str, list[dict[str, Any]]]) -> list[list[str]]:
    """Group keys by the label of their examples (the most common one in a group), each in ``order``."""
    strata: dict[str, list[str]] = defaultdict(list)
    for key in order:
        labels = Counter(str((ex.get("meta") or {}).get("label") or "") for ex in groups[key])
        strata[min(labels, key=lambda label: (-labels[label], label))].append(key)
    return [strata[label] for label in sorted(strata)]


def _draw_test(order: list[str], groups: dict[str, list], target: int, seed_test_max_share: float, *,
               at_least_one: bool) -> tuple[list[str], bool]:
    """(test group keys, whether seed groups were drawn first); never every group, so training keeps one."""
    test_keys: list[str] = []
    seed_keys = [k for k in order if any(kind_of(e) == "seed" for e in groups[k])]
    if seed_keys:
        n_seed = sum(len(groups[k]) for k in seed_keys)
        seed_target = min(target, max(1, int(n_seed * seed_test_max_share)))
        test_keys = _take(seed_keys, groups, seed_target, at_least_one=at_least_one)
    got = sum(len(groups[k]) for k in test_keys)
    if got < target:  # top up from non-seed groups: the cap on seed data holds
        seed_set = set(seed_keys)
        rest = [k for k in order if k not in seed_set]
        test_keys += _take(rest, groups, target - got, at_least_one=at_least_one and not test_keys)
    if len(test_keys) >= len(order):  # training must never be empty
        test_keys = test_keys[:-1]
    return test_keys, bool(seed_keys)


def _draw_validation(strata: list[list[str]], groups: dict[str, list], shares: tuple[float, float, float], *,
                     at_least_one: bool) -> list[str]:
    """Validation group keys from what the test split left, each stratum in proportion to its size.

    Targets are apportioned by largest remainder, so many small strata (rare labels) together still give a
    validation split of the intended size instead of each rounding down to nothing.
    """
    train_share, val_share, _ = shares
    if val_share <= 0:
        return []
    sizes = [sum(len(groups[k]) for k in stratum) for stratum in strata]
    wanted = [val_share / (train_share + val_share) * n for n in sizes]
    targets = _apportion(wanted, round(sum(wanted)))
    val_keys: list[str] = []
    for stratum, target in zip(strata, targets):
        keys = _take(stratum, groups, target, at_least_one=False) if target else []
        val_keys += keys[:-1] if keys and len(keys) >= len(stratum) else keys  # training keeps one group
    if not val_keys and at_least_one:
        largest = max(strata, key=len, default=[])
        if len(largest) >= 2:
            val_keys = [min(largest, key=lambda k: len(groups[k]))]
    return val_keys


def _apportion(wanted: list[float], total: int) -> list[int]:
    """Whole numbers summing to ``total`` (≥ the floors of ``wanted``), largest fractional parts first."""
    counts = [int(w) for w in wanted]
    by_remainder = sorted(range(len(wanted)), key=lambda i: (counts[i] - wanted[i], i))
    for i in by_remainder[:max(0, total - sum(counts))]:
        counts[i] += 1
    return counts


def overlap_report(splits: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    """Documents and augmentation families shared between splits (all zero for a correct split)."""
    docs = {s: {(e.get("meta") or {}).get("doc_id") for e in rows} - {None} for s, rows in splits.items()}
    out = {}
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1:]:
            out[f"{a}/{b}"] = len(docs.get(a, set()) & docs.get(b, set()))
    return out
