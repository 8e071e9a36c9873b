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

from pathlib import Path
from typing import Any

from verticalize.data.schema import make_example, problem_with, stable_id
from verticalize.data.seed_import import ImportReport, example_from_parsed
from verticalize.testsets import SquadQuestion, TestRow, TestSetError, is_squad, no_usable_question, read_test_file

__all__ = ["TestSetError", "is_squad", "load_test_set"]


def load_test_set(path: str | Path) -> tuple[list[dict[str, Any]], ImportReport]:
    """Examples of a user test file (our JSONL, any seed form, or SQuAD JSON) and a report of refused rows.
    The file is read by the shared ``verticalize.testsets.read_test_file`` (the ladder reads ``--test-set``
    files with it too); which rows are kept as they are (our own dataset rows) is decided here."""
    tf = read_test_file(path, hint=" (check project.test_set)")
    name = tf.path.name
    report = ImportReport()
    report.start_file(name, tf.path)
    examples = []
    for item in tf.rows:
        own = None if tf.squad else _own_row(item)
        if own is not None:
            report.accept(name, "dataset")
            examples.append(own)
        elif item.error is not None:
            report.refuse(name, item.where, item.error)
        else:
            assert item.parsed is not None
            report.accept(name, item.parsed.form, item.parsed.system_turns_dropped)
            examples.append(_squad_example(item, name) if tf.squad else
                            example_from_parsed(item.parsed, source=name, where=item.where))
    if not examples:
        raise no_usable_question(tf.path, report.problems)
    return examples, report


def _squad_example(item: TestRow, source: str) -> dict[str, Any]:
    """A SQuAD question as a kind "seed" example, generator "seed:squad"; questions on the same passage share a
    doc id, like siblings generated from one document."""
    q: SquadQuestion = item.row
    assert item.parsed is not None
    doc_id = stable_id("squad", source, q.title, q.paragraph if q.paragraph_id is None else q.paragraph_id)
    extra = {"answerable": False} if q.impossible else {}
    return make_example(q.question, item.parsed.answer, kind="seed", generator="seed:squad", source=source,
                        doc_id=doc_id, id=q.qa_id or stable_id("squad", q.where), answers=item.parsed.answers,
                        context_chars=len(q.context), **extra)


def _own_row(item: TestRow) -> dict[str, Any] | None:
    """A row of our own dataset format (messages + meta) that follows the contract, kept as it is but normalised
    from what the shared reader read in it: a list ``meta.answer`` becomes its first reference with the list in
    ``meta.answers``; an unanswerable row gets answer "", ``meta.answers`` [] and ``meta.answerable`` false. None
    for any other row (it is imported like a seed row)."""
    row, q = item.row, item.parsed
    if q is None or not (isinstance(row, dict) and isinstance(row.get("meta"), dict)
                         and isinstance(row.get("messages"), list)):
        return None
    meta = dict(row["meta"])
    if not q.answerable:
        meta.update(question=q.question, answer="", answers=[], answerable=False)
        own = {**row, "messages": [{"role": "user", "content": q.question}, {"role": "assistant", "content": ""}],
               "meta": meta}
        # The contract asks for an answer; check the rest of it with a stand-in one.
        probe = {**own, "messages": [own["messages"][0], {"role": "assistant", "content": "-"}],
                 "meta": {**meta, "answer": "-"}}
        return own if problem_with(probe) is None else None
    if isinstance(meta.get("answer"), list):
        meta.update(answer=q.answer, answers=q.answers)
        row = {**row, "meta": meta}
    return row if problem_with(row) is None else None
