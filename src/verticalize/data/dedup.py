"""Example deduplication and test-set decontamination.

Dedup keeps the first of each duplicate (callers put human seed data first, so it wins over synthetic data):
- exact: the same question up to case, spacing, punctuation and width (``text.exact_key``) — two different
  answers to one question would be contradictory training targets;
- near: MinHash near-duplicates of question + answer together. Questions alone are not compared because
  templated questions ("What does article 12 require?" / "... article 13 ...") differ only in a few characters.
An augmented variant is never a duplicate of its own family (its parent or siblings): it exists to be similar.
A near match is confirmed only when both texts mention the same numbers: "What does article 12 require?" and
"... article 13 ...", or "第十二条" and "第十三条", share almost every character n-gram yet ask different things.

Decontamination removes training/validation examples whose question is an exact or near duplicate of a test
question, so the test split measures generalisation and not recall of a training row.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from verticalize.data.schema import answer_of, question_of


_NUMBER = re.compile(r"\d+(?:[.,]\d+)*|[〇零一二两三四五六七八九十百千万亿]+")


def _numbers(text: str) -> frozenset[str]:
    return frozenset(_NUMBER.findall(text))


def _family(example: dict[str, Any]) -> str:
    return (example.get("meta") or {}).get("parent_id") or example["id"]


def _task_prefix(example: dict[str, Any]) -> str:
    return str((example.get("meta") or {}).get("task") or "qa")


class _NumberedIndex:
    """MinHash LSH where a match must also mention the same numbers, and every added text is stored.

    ``text.NearDuplicateIndex`` refuses to store a text near an existing one; here a kept example (another
    number, or an augmented variant) must be stored too, so this keeps its own LSH and uses the shared index only
    for its text hashing (the same n-grams and permutations everywhere in the project).
    """

    def __init__(self, threshold: float):
        from datasketch import MinHashLSH

        from verticalize.text import NearDuplicateIndex

        self.threshold = threshold
        self._hasher = NearDuplicateIndex(threshold=threshold)
        self._lsh = MinHashLSH(threshold=threshold, num_perm=self._hasher.num_perm)
        self._stored: dict[str, tuple[Any, frozenset[str]]] = {}

    def signature(self, text: str) -> tuple[Any, frozenset[str]]:
        return self._hasher.minhash(text), _numbers(text)

    def query(self, sig: tuple[Any, frozenset[str]]) -> list[str]:
        mh, numbers = sig
        hits = []
        for key in self._lsh.query(mh):
            other, other_numbers = self._stored[key]
            if other_numbers == numbers and mh.jaccard(other) >= self.threshold:
                hits.append(key)
        return sorted(hits)

    def add(self, key: str, sig: tuple[Any, frozenset[str]]) -> None:
        if key not in self._stored:
            self._lsh.insert(key, sig[0])
            self._stored[key] = sig


def dedup_examples(examples: list[dict[str, Any]], near_threshold: float = 0.85) -> tuple[list[dict[str, Any]],
                                                                                      Counter]:
    """(kept examples in input order, Counter with "exact" and "near" drop counts)."""
    from verticalize.text import exact_key

    seen: dict[str, str] = {}  # exact key -> family of the kept example
    families: dict[str, str] = {}  # kept id -> family
    index = _NumberedIndex(near_threshold)
    kept: list[dict[str, Any]] = []
    dropped: Counter = Counter()
    for ex in examples:
        family = _family(ex)
        key = _task_prefix(ex) + ":" + exact_key(question_of(ex))
        if key in seen and seen[key] != family:
            dropped["exact"] += 1
            continue
        sig = index.signature(question_of(ex) + "\n" + answer_of(ex))
        if any(families.get(other) != family for other in index.query(sig)):
            dropped["near"] += 1
            continue
        seen.setdefault(key, family)
        families[ex["id"]] = family
        index.add(ex["id"], sig)
        kept.append(ex)
    return kept, dropped


def decontaminate(splits: dict[str, list[dict[str, Any]]], threshold: float) -> dict[str, Any]:
    """Remove, in place, train/validation examples whose question duplicates a test question.

    Returns {"removed": {"train": n, "validation": n}, "examples": [{"id", "split", "test_id"}, ...] (first 50)}.
    """
    from verticalize.text import exact_key

    test = splits.get("test") or []
    exact = {exact_key(question_of(ex)): ex["id"] for ex in test}
    index = _NumberedIndex(threshold)
    for ex in test:
        index.add(ex["id"], index.signature(question_of(ex)))
    removed: Counter = Counter()
    samples: list[dict[str, str]] = []
    for split in ("train", "validation"):
        kept = []
        for ex in splits.get(split) or []:
            q = question_of(ex)
            hit = exact.get(exact_key(q)) or next(iter(index.query(index.signature(q))), None)
            if hit is None:
                kept.append(ex)
                continue
            removed[split] += 1
            if len(samples) < 50:
                samples.append({"id": ex["id"], "split": split, "test_id": hit})
        splits[split] = kept
    return {"removed": {s: removed.get(s, 0) for s in ("train", "validation")}, "examples": samples}
