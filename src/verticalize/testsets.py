"""Reading test-set files, for every stage that reads one: the data stage (``project.test_set`` replaces the test
split), evaluate (the ladder's test set) and kb (retrieval evaluation questions).

One reading of each form:
    SQuAD JSON (SQuAD 1.1/2.0, CMRC 2018, DRCD): ``{"data": [{"title", "paragraphs": [{"context", "qas": [{"id",
        "question", "answers": [{"text"}], "is_impossible"?}]}]}]}`` -> ``squad_questions`` yields one
        ``SquadQuestion`` per entry of ``qas`` (question and answers stripped, answers deduplicated, SQuAD 2.0's
        ``"is_impossible": true`` as ``impossible``); malformed entries are skipped, not fatal.
    JSONL rows: ``is_unanswerable(row)`` is the one rule for a row that marks its question as one the documents
        cannot answer: ``"answerable": false`` (on the row or in its meta, also "false"/"no"/"0") or an empty
        answer list (``answer``, ``output`` or ``meta.answer`` is ``[]``).

What a stage builds from a question (a dataset example, a ladder ``TestExample``, a retrieval question) and
which questions it refuses stay with the stage. ``TestSetError`` is the one error for an unusable test set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

from verticalize.errors import TestSetError

__all__ = ["TestSetError", "SquadQuestion", "is_squad", "squad_questions", "is_false", "is_unanswerable"]


@dataclass(frozen=True)
class SquadQuestion:
    where: str                  # "data[0].paragraphs[1].qas[2]"
    article: int
    paragraph: int
    index: int                  # the question's place in its paragraph's qas
    qa_id: str | None           # the file's id, when it gives one
    question: str               # stripped; "" when missing
    answers: list[str] = field(default_factory=list)  # stripped, non-empty, each once, in file order
    impossible: bool = False    # SQuAD 2.0 "is_impossible": true (the paragraph does not answer it)
    title: str = ""
    context: str = ""
    paragraph_id: Any = None    # the paragraph's own id, when it has one


def is_squad(obj: Any) -> bool:
    """A parsed JSON document in SQuAD form: a top-level ``data`` list holding articles with ``paragraphs``."""
    data = obj.get("data") if isinstance(obj, dict) else None
    return isinstance(data, list) and any(isinstance(d, dict) and "paragraphs" in d for d in data)


def squad_questions(obj: dict[str, Any]) -> Iterator[SquadQuestion]:
    """Every question of a SQuAD-form document, in file order."""
    for a_i, article in enumerate(obj.get("data") or []):
        if not isinstance(article, dict):
            continue
        title = str(article.get("title") or "")
        for p_i, para in enumerate(article.get("paragraphs") or []):
            if not isinstance(para, dict):
                continue
            context = para.get("context") or ""
            for q_i, qa in enumerate(para.get("qas") or []):
                if not isinstance(qa, dict):
                    continue
                answers = [str(a.get("text") or "").strip() for a in qa.get("answers") or [] if isinstance(a, dict)]
                yield SquadQuestion(where=f"data[{a_i}].paragraphs[{p_i}].qas[{q_i}]", article=a_i, paragraph=p_i,
                                    index=q_i, qa_id=str(qa["id"]) if qa.get("id") else None,
                                    question=str(qa.get("question") or "").strip(),
                                    answers=list(dict.fromkeys(a for a in answers if a)),
                                    impossible=qa.get("is_impossible") is True, title=title,
                                    context=context if isinstance(context, str) else "",
                                    paragraph_id=para.get("id"))


def is_false(value: Any) -> bool:
    """``false`` as a JSON boolean or as the strings "false", "no", "0" (CSV cells, hand-written files)."""
    return value is False or (isinstance(value, str) and value.strip().lower() in ("false", "no", "0"))


def is_unanswerable(row: Any) -> bool:
    """Whether a row marks its question as one the documents cannot answer: ``"answerable": false`` (on the
    row or in its meta) or an empty answer list (``answer``/``output``/``meta.answer``)."""
    if not isinstance(row, dict):
        return False
    meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
    if is_false(row.get("answerable")) or is_false(meta.get("answerable")):
        return True
    return any(isinstance(v, list) and not v for v in (row.get("answer"), row.get("output"), meta.get("answer")))
