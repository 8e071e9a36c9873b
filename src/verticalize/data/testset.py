"""A user-supplied test set (``project.test_set``) that replaces the drawn test split.

Two forms: our own dataset JSONL (rows with ``messages`` and ``meta``; any seed form is accepted too), and SQuAD
JSON (``{"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question", "answers": [{"text"}]}]}]}]}``,
as used by CMRC 2018 and DRCD). SQuAD questions become kind "seed" examples with generator "seed:squad", the
first answer as the reference and every distinct answer in ``meta.answers``.

Unanswerable questions are kept (they measure whether the model says the documents do not hold the answer):
SQuAD 2.0's ``"is_impossible": true``, and in JSONL an empty answer list or ``"answerable": false``. They are
written with answer "", ``meta.answers`` [] and ``meta.answerable`` false. The test file only ever fills the test
split, so such a row never becomes training data. A SQuAD question without answers and without
``is_impossible`` is still refused (more likely a broken row than a deliberate unanswerable one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from verticalize.data.schema import make_example, problem_with, question_of, stable_id
from verticalize.data.seed_import import ImportReport, RowError, example_from_row, iter_rows, read_text
from verticalize.testsets import TestSetError, is_squad, is_unanswerable, squad_questions

__all__ = ["TestSetError", "is_squad", "load_test_set", "squad_examples"]


def squad_examples(obj: dict[str, Any], source: str, report: ImportReport) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for q in squad_questions(obj):
        if not q.question or not (q.answers or q.impossible):
            report.refuse(source, q.where, "no question" if not q.question else
                          "no answer (mark an unanswerable question with \"is_impossible\": true)")
            continue
        report.accept(source, "squad")
        # Questions on the same passage share a doc id, like siblings generated from one document.
        doc_id = stable_id("squad", source, q.title, q.paragraph if q.paragraph_id is None else q.paragraph_id)
        extra = {"answerable": False} if q.impossible else {}
        out.append(make_example(q.question, "" if q.impossible else q.answers[0], kind="seed",
                                generator="seed:squad", source=source, doc_id=doc_id,
                                id=q.qa_id or stable_id("squad", q.where),
                                answers=[] if q.impossible else q.answers, context_chars=len(q.context), **extra))
    return out


def load_test_set(path: str | Path) -> tuple[list[dict[str, Any]], ImportReport]:
    """Examples of a user test file (our JSONL, any seed form, or SQuAD JSON) and a report of refused rows."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise TestSetError(f"test set not found: {p} (check project.test_set)")
    report = ImportReport()
    report.start_file(p.name, p)
    try:
        text = read_text(p)
    except RowError as e:
        raise TestSetError(f"test set {p} cannot be read: {e}") from None
    if p.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            obj = None
        if is_squad(obj):
            examples = squad_examples(obj, p.name, report)
            return _checked(examples, p, report), report
    examples = []
    for where, row in iter_rows(p):
        own = _own_row(row)
        try:
            example, form, dropped = ((own, "dataset", 0) if own is not None else
                                      example_from_row(row, source=p.name, where=where, unanswerable_ok=True))
        except RowError as e:
            report.refuse(p.name, where, e)
            continue
        report.accept(p.name, form, dropped)
        examples.append(example)
    return _checked(examples, p, report), report


def _own_row(row: Any) -> dict[str, Any] | None:
    """A row of our own dataset format (messages + meta) that follows the contract, normalised: a list
    ``meta.answer`` becomes its first reference with the list in ``meta.answers``; an unanswerable row gets
    answer "", ``meta.answers`` [] and ``meta.answerable`` false. None for any other row."""
    if not (isinstance(row, dict) and isinstance(row.get("meta"), dict) and isinstance(row.get("messages"), list)):
        return None
    meta = dict(row["meta"])
    if is_unanswerable(row):
        if meta.get("task") == "classification":
            return None
        question = question_of(row).strip()
        meta.update(question=question, answer="", answers=[], answerable=False)
        own = {**row, "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": ""}],
               "meta": meta}
        # The contract asks for an answer; check the rest of it with a stand-in one.
        probe = {**own, "messages": [own["messages"][0], {"role": "assistant", "content": "-"}],
                 "meta": {**meta, "answer": "-"}}
        return own if question and problem_with(probe) is None else None
    if isinstance(meta.get("answer"), list):
        answers = list(dict.fromkeys(str(a).strip() for a in meta["answer"] if str(a).strip()))
        if not answers:
            return None
        meta.update(answer=answers[0], answers=answers)
        row = {**row, "meta": meta}
    return row if problem_with(row) is None else None


def _checked(examples: list[dict[str, Any]], path: Path, report: ImportReport) -> list[dict[str, Any]]:
    if not examples:
        shown = "; ".join(report.problems[:3]) or "the file holds no row"
        more = f" (and {len(report.problems) - 3} more)" if len(report.problems) > 3 else ""
        raise TestSetError(f"test set {path} has no usable question; refused rows: {shown}{more}")
    return examples
