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
from typing import Any, Callable, Iterable

from datasketch import MinHash

from verticalize.data.schema import answer_of, question_of
from verticalize.text import NearDuplicateIndex, exact_key


_NUMBER = re.compile(r"\d+(?:[.,]\d+)*|[〇零一二两三四五六七八九十百千万亿]+")


def _numbers(text: str) -> frozenset[str]:
    return frozenset(_NUMBER.findall(text))


def _family(example: dict[str, Any]) -> str:
    return (example.get("meta") or {}).get("parent_id") or example["id"]


def _task_prefix(example: dict[str, Any]) -> str:
    return str((example.get("meta") or {}).get("task") or "qa")


class _NumberedIndex:
    """A near-duplicate index where a match must also mention the same numbers, and every kept text is stored
    (``NearDuplicateIndex.insert``): a kept example (another number, or an augmented variant of its family)
    must still be findable by later examples. A signature is hashed once and used to query, then to insert.
    """

    def __init__(self, threshold: float):
        self._near = NearDuplicateIndex(threshold=threshold)
        self._numbers: dict[str, frozenset[str]] = {}

    def signature(self, text: str) -> tuple[MinHash, frozenset[str]]:
        return self._near.minhash(text), _numbers(text)

    def matching(self, sig: tuple[MinHash, frozenset[str]]) -> list[str]:
        mh, numbers = sig
        return [k for k in self._near.query(mh) if self._numbers[k] == numbers]

    def insert(self, key: str, sig: tuple[MinHash, frozenset[str]]) -> None:
        if key in self._near:
            return
        self._near.insert(key, sig[0])
        self._numbers[key] = sig[1]


def dedup_examples(examples: list[dict[str, Any]], near_threshold: float = 0.85, *,
                   advance: Callable[[int], None] | None = None) -> tuple[list[dict[str, Any]], Counter]:
    """(kept examples in input order, Counter with "exact" and "near" drop counts); ``advance(1)`` per example."""
    seen: dict[str, str] = {}  # exact key -> family of the kept example
    families: dict[str, str] = {}  # kept id -> family
    index = _NumberedIndex(near_threshold)
    kept: list[dict[str, Any]] = []
    dropped: Counter = Counter()
    for ex in examples:
        if advance:
            advance(1)
        family = _family(ex)
        key = _task_prefix(ex) + ":" + exact_key(question_of(ex))
        if key in seen and seen[key] != family:
            dropped["exact"] += 1
            continue
        sig = index.signature(question_of(ex) + "\n" + answer_of(ex))
        if any(families.get(other) != family for other in index.matching(sig)):
            dropped["near"] += 1
            continue
        seen.setdefault(key, family)
        families[ex["id"]] = family
        index.insert(ex["id"], sig)
        kept.append(ex)
    return kept, dropped


class TestQuestions:
    """The test questions, to tell whether another question duplicates one — exactly, or nearly with the same
    numbers: the rule `decontaminate` applies to the splits, also used for what reaches training without the data
    stage (the preference pairs and ratings of feedback)."""

    def __init__(self, questions: Iterable[tuple[str, str]], threshold: float):
        self._exact: dict[str, str] = {}
        self._index = _NumberedIndex(threshold)
        for test_id, question in questions:
            self._exact.setdefault(exact_key(question), test_id)
            self._index.insert(test_id, self._index.signature(question))

    def match(self, question: str) -> str | None:
        """The id of the test question ``question`` duplicates, or None."""
        return self._exact.get(exact_key(question)) or next(iter(self._index.matching(
            self._index.signature(question))), None)


def decontaminate(splits: dict[str, list[dict[str, Any]]], threshold: float, *,
                  advance: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Remove, in place, train/validation examples whose question duplicates a test question.

    Returns {"removed": {"train": n, "validation": n}, "examples": [{"id", "split", "test_id"}, ...] (first 50)}.
    """
    test = TestQuestions(((ex["id"], question_of(ex)) for ex in splits.get("test") or []), threshold)
    removed: Counter = Counter()
    samples: list[dict[str, str]] = []
    for split in ("train", "validation"):
        kept = []
        for ex in splits.get(split) or []:
            if advance:
                advance(1)
            hit = test.match(question_of(ex))
            if hit is None:
                kept.append(ex)
                continue
            removed[split] += 1
            if len(samples) < 50:
                samples.append({"id": ex["id"], "split": split, "test_id": hit})
        splits[split] = kept
    return {"removed": {s: removed.get(s, 0) for s in ("train", "validation")}, "examples": samples}
