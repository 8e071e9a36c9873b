"""Test sets for the ladder: the data stage's test split, or a user's own file (our JSONL or SQuAD JSON).

Bad rows are refused with their line number and reason; the rest of the file is still used.

Unanswerable questions (the documents do not hold the answer) are examples too, with ``answerable`` false and
no reference: SQuAD 2.0's ``"is_impossible": true``, and in JSONL ``"answerable": false`` (on the row or in its
meta) or an empty answer list (``"answer": []``). The ladder scores them by whether the model refuses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verticalize.artifacts import RunDir
from verticalize.testsets import TestSetError, is_false, squad_questions

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
        if ts.examples and all(_is_seed(row) for row in _raw_meta(path)):
            ts.kind = "human"
    if max_examples:
        ts.examples = ts.examples[:max_examples]
    return ts


def read_test_file(path: str | Path, kind: str) -> TestSet:
    p = Path(path)
    if not p.is_file():
        raise TestSetError(f"test set file not found: {p}")
    text = p.read_text(encoding="utf-8-sig")
    stripped = text.lstrip()
    if stripped.startswith("{") and '"data"' in stripped[:2000] and _looks_like_squad(text):
        examples, refused = _from_squad(json.loads(text), p)
    else:
        examples, refused = _from_jsonl(text, p)
    if not examples:
        reasons = "; ".join(f"line {r['line']}: {r['reason']}" for r in refused[:3])
        raise TestSetError(f"test set {p} has no usable example ({reasons or 'empty file'}). Expected JSONL rows "
                           "with messages (user + assistant) or question/answer, or SQuAD-format JSON.")
    return TestSet(kind=kind, path=str(p), examples=examples, refused=refused)


def _looks_like_squad(text: str) -> bool:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return False
    return isinstance(obj, dict) and isinstance(obj.get("data"), list)


def _from_squad(obj: dict[str, Any], path: Path) -> tuple[list[TestExample], list[dict[str, Any]]]:
    examples, refused = [], []
    for q in squad_questions(obj):
        qid = q.qa_id or f"{q.article}-{q.paragraph}-{len(examples)}"
        if not q.question or not (q.answers or q.impossible):
            refused.append({"line": qid, "reason": "question without a non-empty answer"})
            continue
        examples.append(TestExample(id=qid, question=q.question, references=[] if q.impossible else q.answers,
                                    source=q.title or None, answerable=not q.impossible))
    return examples, refused


def _from_jsonl(text: str, path: Path) -> tuple[list[TestExample], list[dict[str, Any]]]:
    examples, refused = [], []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            examples.append(_from_row(row, n))
        except (json.JSONDecodeError, ValueError, TypeError, AttributeError) as e:
            refused.append({"line": n, "reason": str(e) if not isinstance(e, json.JSONDecodeError)
                            else f"not JSON ({e.msg})"})
    return examples, refused


def _from_row(row: dict[str, Any], n: int) -> TestExample:
    if not isinstance(row, dict):
        raise ValueError("row is not a JSON object")
    meta = row.get("meta") or {}
    question = meta.get("question") or row.get("question") or row.get("instruction")
    answer = meta.get("answer") if "answer" in meta else row.get("answer", row.get("output"))
    if isinstance(row.get("messages"), list):
        users = [m.get("content", "") for m in row["messages"] if m.get("role") == "user"]
        assistants = [m.get("content", "") for m in row["messages"] if m.get("role") == "assistant"]
        question = question or (users[-1] if users else None)
        answer = answer if answer is not None else (assistants[-1] if assistants else None)
    if isinstance(meta.get("answers"), list) and any(str(a).strip() for a in meta["answers"]):
        answer = meta["answers"]  # the data stage keeps every reference of a SQuAD question here
    label = meta.get("label") if meta.get("label") is not None else row.get("label")
    task = meta.get("task") or ("classification" if label is not None and answer is None else "qa")
    if task == "classification":
        answer = label if label is not None else answer
    if not question or not str(question).strip():
        raise ValueError("no question (need messages with a user turn, or a 'question' field)")
    explicit = row.get("answerable", meta.get("answerable"))
    declared_false = is_false(explicit)
    unanswerable = declared_false or (isinstance(answer, list) and not answer)
    if unanswerable and explicit is True:
        raise ValueError("answerable is true but the answer list is empty")
    if unanswerable and task == "classification":
        raise ValueError("a classification row cannot be unanswerable (it needs a label)")
    given = answer if isinstance(answer, list) else [] if answer is None else [answer]
    refs = [] if unanswerable else [str(a).strip() for a in given if str(a).strip()]
    if not unanswerable and not refs:
        raise ValueError("no reference answer (need an assistant turn, 'answer', or 'label'; an unanswerable "
                         "question has \"answer\": [] or \"answerable\": false)")
    return TestExample(id=str(row.get("id") or f"line-{n}"), question=str(question).strip(), references=refs,
                       task=task, label=str(label) if task == "classification" else None,
                       doc_id=meta.get("doc_id"), source=meta.get("source"),
                       chunk_ids=list(meta.get("chunk_ids") or []), answerable=not unanswerable)


def _raw_meta(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append((json.loads(line).get("meta") or {}))
        except (json.JSONDecodeError, AttributeError):
            continue
    return rows


def _is_seed(meta: dict[str, Any]) -> bool:
    return meta.get("kind") == "seed"
