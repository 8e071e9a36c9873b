"""Retrieval evaluation: recall@k and MRR on questions whose answers are known spans.

A retrieved chunk is relevant to a question when its text contains one of the answers (both normalised by the
shared ``answer_key``, as the ladder finds answers in passages: NFKC, case folded, whitespace and punctuation
removed, so "4 分钟。" matches "4分钟") or, when the question names its
gold document, when the chunk comes from that document (``match``: "either" (default), "span" or "doc").
The rank of a question is that of its first relevant chunk; recall@k is the share of questions ranked ≤ k (the
hit rate, ``verticalize.retrieval.hit_rate_at_k``; the ladder's recall@k is the per-question share of gold items,
``recall_at_k``) and MRR the mean of 1/rank, counting 0 beyond the deepest k asked for.

Question files: our dataset JSONL (``meta.question``/``meta.answer``/``meta.doc_id``, or the user and assistant
messages) and SQuAD JSON (``data[].paragraphs[].qas[]``, e.g. CMRC 2018).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

from verticalize.artifacts import write_json
from verticalize.kb.base import Hit, KBError, KBNotFoundError
from verticalize.kb.build import open_kb
from verticalize.retrieval import hit_rate_at_k, mrr_of_ranks
from verticalize.testsets import squad_questions
from verticalize.text import answer_key

Match = Literal["either", "span", "doc"]
MAX_LISTED = 20


@dataclass
class Question:
    id: str
    question: str
    answers: list[str] = field(default_factory=list)
    doc_id: str | None = None


# --------------------------------------------------------------------------------------------- loading
def load_questions(path: str | Path) -> tuple[list[Question], list[dict[str, Any]]]:
    """Questions from a SQuAD JSON or our JSONL file, and the refused entries as {where, reason}."""
    path = Path(path)
    if not path.is_file():
        raise KBNotFoundError(f"question file not found: {path}")
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise KBError(f"{path} is not valid JSON (line {e.lineno}: {e.msg})") from None
        if not (isinstance(data, dict) and isinstance(data.get("data"), list)):
            raise KBError(f"{path}: expected SQuAD JSON with a top-level 'data' list")
        return _squad_questions(data)
    return _jsonl_questions(text.splitlines())


def _squad_questions(data: dict[str, Any]) -> tuple[list[Question], list[dict[str, Any]]]:
    questions, refused = [], []
    for sq in squad_questions(data):
        q = Question(id=sq.qa_id or sq.where, question=sq.question, answers=[a for a in sq.answers if answer_key(a)])
        reason = _question_problem(q)
        if reason:
            refused.append({"where": sq.where, "reason": reason})
        else:
            questions.append(q)
    return questions, refused


def _jsonl_questions(lines: Iterable[str]) -> tuple[list[Question], list[dict[str, Any]]]:
    questions, refused = [], []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"line {lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            refused.append({"where": where, "reason": f"not valid JSON ({e.msg})"})
            continue
        if not isinstance(row, dict):
            refused.append({"where": where, "reason": "not a JSON object"})
            continue
        meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
        if meta.get("task") == "classification":
            refused.append({"where": where, "reason": "classification example: its answer is a label, not a span"})
            continue
        user, assistant = _message_pair(row.get("messages"))
        question = meta.get("question") or row.get("question") or user or ""
        answers = meta.get("answer") or row.get("answers") or row.get("answer") or assistant or []
        answers = [answers] if isinstance(answers, str) else [str(a) for a in answers]
        q = Question(id=str(row.get("id") or where), question=str(question),
                     answers=[a for a in answers if answer_key(a)],
                     doc_id=meta.get("doc_id") or row.get("doc_id"))
        reason = _question_problem(q)
        if reason:
            refused.append({"where": where, "reason": reason})
        else:
            questions.append(q)
    return questions, refused


def _message_pair(messages: Any) -> tuple[str | None, str | None]:
    if not isinstance(messages, list):
        return None, None
    user = next((m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"), None)
    assistant = next((m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "assistant"),
                     None)
    return user, assistant


def _question_problem(q: Question) -> str | None:
    if not q.question.strip():
        return "no question text"
    if not q.answers and not q.doc_id:
        return "no answer with letters or digits and no gold doc_id: relevance cannot be judged"
    return None


# --------------------------------------------------------------------------------------------- metrics
def first_relevant_rank(question: Question, hits: Sequence[Hit], match: Match = "either") -> int | None:
    """1-based rank of the first relevant hit, or None."""
    answers = [answer_key(a) for a in question.answers] if match != "doc" else []
    for rank, hit in enumerate(hits, start=1):
        if match != "span" and question.doc_id and hit.doc_id == question.doc_id:
            return rank
        if answers:
            text = answer_key(hit.text)
            if any(a in text for a in answers):
                return rank
    return None


def retrieval_metrics(ranks: Sequence[int | None], ks: Sequence[int]) -> dict[str, float]:
    """recall@k for each k (``hit_rate_at_k``: the share of questions with a relevant chunk in the top k) and MRR
    (0 for questions not found within max(ks)) from first-relevant ranks."""
    if not ranks:
        return {**{f"recall@{k}": 0.0 for k in ks}, "mrr": 0.0}
    out = {f"recall@{k}": hit_rate_at_k(ranks, k) for k in ks}  # one relevant rank per question: the hit rate
    out["mrr"] = mrr_of_ranks(ranks, max(ks))
    return {k: round(v, 4) for k, v in out.items()}


def evaluate_kb(kb_dir: str | Path, questions_path: str | Path, ks: Sequence[int] = (1, 5, 20),
                match: Match = "either", save: bool = False) -> dict[str, Any]:
    """Open the KB, run every question, return recall@k, MRR and misses; ``save`` also writes kb/eval.json."""
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise KBError(f"k values must be positive integers, got {list(ks)}")
    if match not in ("either", "span", "doc"):
        raise KBError(f"match must be either, span or doc, got '{match}'")
    kb = open_kb(kb_dir)
    questions, refused = load_questions(questions_path)
    if not questions:
        raise KBError(f"no usable questions in {questions_path} ({len(refused)} refused"
                      + (f"; first: {refused[0]['where']}: {refused[0]['reason']})" if refused else ")"))
    ranks, misses = [], []
    for q in questions:
        rank = first_relevant_rank(q, kb.search(q.question, ks[-1]), match)
        ranks.append(rank)
        if rank is None and len(misses) < MAX_LISTED:
            misses.append({"id": q.id, "question": q.question, "answers": q.answers[:3]})
    report = {"questions": len(questions), "refused": len(refused), "match": match, "ks": ks,
              "metrics": retrieval_metrics(ranks, ks), "misses": misses, "refused_examples": refused[:MAX_LISTED],
              "questions_file": str(questions_path), "kb": str(kb.dir)}
    if save:
        report["path"] = str(kb.dir / "eval.json")
        write_json(kb.dir / "eval.json", report)
    return report
