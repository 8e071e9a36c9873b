"""A user-supplied test set (``project.test_set``) that replaces the drawn test split.

Two forms: our own dataset JSONL (rows with ``messages`` and ``meta``; any seed form is accepted too), and SQuAD
JSON (``{"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question", "answers": [{"text"}]}]}]}]}``,
as used by CMRC 2018 and DRCD). SQuAD questions become kind "seed" examples with generator "seed:squad", the
first answer as the reference and every distinct answer in ``meta.answers``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from verticalize.data.schema import make_example, problem_with, stable_id
from verticalize.data.seed_import import ImportReport, RowError, example_from_row, iter_rows, read_text


class TestSetError(FileNotFoundError):
    """The test set file is missing or has no usable question (user-fixable)."""

    __test__ = False  # not a pytest class


def is_squad(obj: Any) -> bool:
    data = obj.get("data") if isinstance(obj, dict) else None
    return isinstance(data, list) and any(isinstance(d, dict) and "paragraphs" in d for d in data)


def squad_examples(obj: dict[str, Any], source: str, report: ImportReport) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for d_i, doc in enumerate(obj["data"]):
        title = str(doc.get("title") or "") if isinstance(doc, dict) else ""
        for p_i, para in enumerate(doc.get("paragraphs", []) if isinstance(doc, dict) else []):
            context = para.get("context", "") if isinstance(para, dict) else ""
            # Questions on the same passage share a doc id, like siblings generated from one document.
            doc_id = stable_id("squad", source, title, para.get("id", p_i) if isinstance(para, dict) else p_i)
            for q_i, qa in enumerate(para.get("qas", []) if isinstance(para, dict) else []):
                where = f"data[{d_i}].paragraphs[{p_i}].qas[{q_i}]"
                answers = [a.get("text", "").strip() for a in qa.get("answers", []) if isinstance(a, dict)]
                answers = list(dict.fromkeys(a for a in answers if a))
                question = str(qa.get("question", "")).strip()
                if not question or not answers:
                    report.refuse(source, where, "no question" if not question else "no answer")
                    continue
                report.accept(source, "squad")
                out.append(make_example(question, answers[0], kind="seed", generator="seed:squad", source=source,
                                        doc_id=doc_id, id=str(qa.get("id") or stable_id("squad", where)),
                                        answers=answers, context_chars=len(context)))
    return out


def load_test_set(path: str | Path) -> tuple[list[dict[str, Any]], ImportReport]:
    """Examples of a user test file (our JSONL, any seed form, or SQuAD JSON) and a report of refused rows."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise TestSetError(f"test set not found: {p} (check project.test_set)")
    report = ImportReport()
    report.start_file(p.name, p)
    if p.suffix.lower() == ".json":
        try:
            obj = json.loads(read_text(p))
        except (json.JSONDecodeError, RowError):
            obj = None
        if is_squad(obj):
            examples = squad_examples(obj, p.name, report)
            return _checked(examples, p), report
    examples = []
    for where, row in iter_rows(p):
        own = isinstance(row, dict) and isinstance(row.get("meta"), dict) and problem_with(row) is None
        try:
            example, form, dropped = (row, "dataset", 0) if own else example_from_row(row, source=p.name, where=where)
        except RowError as e:
            report.refuse(p.name, where, e)
            continue
        report.accept(p.name, form, dropped)
        examples.append(example)
    return _checked(examples, p), report


def _checked(examples: list[dict[str, Any]], path: Path) -> list[dict[str, Any]]:
    if not examples:
        raise TestSetError(f"test set {path} has no usable question (see the reported rows)")
    return examples
