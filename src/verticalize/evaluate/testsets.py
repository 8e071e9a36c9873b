"""Test sets for the ladder: the data stage's test split, or a user's own file (our JSONL, any seed form, or SQuAD
JSON), read by the shared ``verticalize.testsets.read_test_file`` (the data stage reads ``project.test_set`` with
it too, so both accept the same files and refuse the same rows with the same reasons).

Bad rows are refused with their line number (a SQuAD question: its id) and reason; the rest of the file is still
used.

Unanswerable questions (the documents do not hold the answer) are examples too, with ``answerable`` false and
no reference: SQuAD 2.0's ``"is_impossible": true``, and in JSONL ``"answerable": false`` (on the row or in its
meta) or an empty answer list (``"answer": []``). The ladder scores them by whether the model refuses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verticalize.artifacts import RunDir
from verticalize.testsets import SquadQuestion, TestRow, TestSetError, no_usable_question
from verticalize.testsets import read_test_file as read_file

__all__ = ["TestExample", "TestSet", "TestSetError", "load_test_set", "read_test_file"]


@dataclass
class TestExample:
    __test__ = False
    id: str
    question: str
    references: list[str]
    task: str = "qa"
    label: str | None = None
    doc_id: str | None = None
    source: str | None = None
    chunk_ids: list[str] = field(default_factory=list)
    answerable: bool = True  # False: the documents do not hold the answer; the right answer is a refusal

    def __post_init__(self) -> None:
        if self.answerable and not self.references:
            raise ValueError(f"example {self.id}: an answerable question needs a reference answer")


@dataclass
class TestSet:
    __test__ = False
    kind: str  # synthetic | human | user
    path: str
    examples: list[TestExample]
    refused: list[dict[str, Any]]
    rows: list[TestRow] = field(default_factory=list, repr=False)  # every row as read (the refused ones too)

    @property
    def task(self) -> str:
        tasks = {e.task for e in self.examples}
        return "classification" if tasks == {"classification"} else "qa"

    @property
    def n_unanswerable(self) -> int:
        return sum(1 for e in self.examples if not e.answerable)


def load_test_set(run: RunDir, user_file: str | Path | None = None, human_file: str | Path | None = None,
                  max_examples: int | None = None) -> TestSet:
    """``user_file`` (--test-set) wins, then ``human_file`` (project.test_set), then RUN/data/test.jsonl."""
    if user_file:
        ts = read_test_file(user_file, "user")
    elif human_file:
        ts = read_test_file(human_file, "human")
    else:
        path = run.dataset_split("test")
        if not path.is_file():
            raise TestSetError(f"no test set: {path} does not exist. Run `verticalize data build` first or pass "
                               "--test-set FILE (our JSONL or SQuAD JSON).")
        ts = read_test_file(path, "synthetic")
        if ts.examples and _all_seed(ts):
            ts.kind = "human"
    if max_examples:
        ts.examples = ts.examples[:max_examples]
    return ts


def read_test_file(path: str | Path, kind: str) -> TestSet:
    tf = read_file(path)
    examples, refused = [], []
    for item in tf.rows:
        if item.error is not None:
            refused.append({"line": item.key, "reason": item.error})
            continue
        assert item.parsed is not None
        examples.append(_squad_example(item, len(examples)) if tf.squad else _row_example(item))
    if not examples:
        raise no_usable_question(tf.path, tf.problems())
    return TestSet(kind=kind, path=str(tf.path), examples=examples, refused=refused, rows=tf.rows)


def _squad_example(item: TestRow, n: int) -> TestExample:
    q: SquadQuestion = item.row
    p = item.parsed
    assert p is not None
    return TestExample(id=q.qa_id or f"{q.article}-{q.paragraph}-{n}", question=p.question, references=p.references,
                       source=q.title or None, answerable=p.answerable)


def _row_example(item: TestRow) -> TestExample:
    p, row = item.parsed, item.row
    assert p is not None
    meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
    return TestExample(id=str(row.get("id") or f"line-{item.key}"), question=p.question, references=p.references,
                       task=p.task, label=p.label if p.task == "classification" else None,
                       doc_id=meta.get("doc_id"), source=meta.get("source"),
                       chunk_ids=list(meta.get("chunk_ids") or []), answerable=p.answerable)


def _all_seed(ts: TestSet) -> bool:
    """Every row of the file is a human-written seed row (``meta.kind`` "seed")."""
    metas = [row.get("meta") or {} for row in (r.row for r in ts.rows) if isinstance(row, dict)]
    return all(isinstance(m, dict) and m.get("kind") == "seed" for m in metas)
