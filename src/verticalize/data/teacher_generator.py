"""The ``llm`` generator: a teacher model writes questions about a chunk, then answers each from the chunk alone.

Two steps (rather than one "write Q&A pairs" prompt) because an answer written in a separate call that sees only
the passage and the question is far less likely to drift into the teacher's own knowledge; the grounding filter
then checks it. Chunks are processed on the teacher's concurrency; output order follows input order, so a run is
reproducible given the same replies (which the cache guarantees on a rerun). A chunk whose requests fail is
counted and skipped, never fatal.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any, Iterator

from verticalize.data.schema import make_example
from verticalize.json_reply import ReplyParseError
from verticalize.openai_client import TeacherClient, TeacherError

_LANG_NAMES = {"zh": "Chinese (简体中文)", "en": "English", "mixed": "the passage's main language"}

QUESTION_SYSTEM = ("You write questions for a reading test about passages from a domain's documents. "
                   "Reply with JSON only.")
QUESTION_USER = (
    "Passage:\n<<<\n{text}\n>>>\n\n"
    "Write up to {n} different questions that this passage answers, each answerable from the passage alone, "
    "specific enough to make sense without seeing the passage, in {language}. Do not put the answer in the "
    'question. Reply with JSON only: {{"questions": ["...", "..."]}}')
ANSWER_SYSTEM = ("You answer questions strictly from the given passage. Quote or closely restate the passage; "
                 "never add facts that are not in it. Reply with JSON only.")
ANSWER_USER = (
    "Passage:\n<<<\n{text}\n>>>\n\nQuestion: {question}\n\n"
    "Answer concisely in the question's language, using only the passage. If the passage does not answer the "
    'question, give an empty string. Reply with JSON only: {{"answer": "..."}}')

_MAX_PROBLEMS = 50  # problems listed in the report; the counters keep the full numbers


class LLMGenerator:
    """Distil QA pairs from chunks through a ``TeacherClient``; ``report()`` feeds the data manifest."""

    name = "llm"

    def __init__(self, teacher: TeacherClient, *, max_per_chunk: int = 4):
        self.teacher = teacher
        self.max_per_chunk = max_per_chunk
        self.counts: Counter = Counter()
        self.problems: list[dict[str, str]] = []
        self._lock = threading.Lock()  # chunks are processed on several threads

    def generate(self, chunks: list[dict]) -> Iterator[dict]:
        if self.max_per_chunk <= 0:
            return
        for examples in self.teacher.imap(self._examples_for, chunks):
            yield from examples

    def report(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "teacher_usage": self.teacher.usage.to_dict(),
                "teacher_model": self.teacher.model, "problems": list(self.problems)}

    # ------------------------------------------------------------------------------------------------ steps
    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    def _examples_for(self, chunk: dict) -> list[dict]:
        self._count("chunks")
        text = (chunk.get("text") or "").strip()
        if not text:
            self._problem(chunk, "empty chunk")
            return []
        try:
            questions = self._questions(chunk, text)
        except (TeacherError, ReplyParseError) as e:
            self._problem(chunk, f"questions: {e}")
            return []
        examples = []
        for question in questions:
            try:
                answer = self._answer(text, question)
            except (TeacherError, ReplyParseError) as e:
                self._problem(chunk, f"answer: {e}")
                continue
            self._count("answers")
            examples.append(make_example(question, answer, kind="synthetic", generator="llm", chunk=chunk))
        return examples

    def _questions(self, chunk: dict, text: str) -> list[str]:
        language = _LANG_NAMES.get(chunk.get("lang") or "", "the passage's language")
        reply = self.teacher.complete_json([
            {"role": "system", "content": QUESTION_SYSTEM},
            {"role": "user", "content": QUESTION_USER.format(text=text, n=self.max_per_chunk, language=language)},
        ])
        questions = _strings(reply.get("questions") if isinstance(reply, dict) else reply, key="question")
        unique = list(dict.fromkeys(q for q in questions if q))[: self.max_per_chunk]
        self._count("questions", len(unique))
        return unique

    def _answer(self, text: str, question: str) -> str:
        reply = self.teacher.complete_json([
            {"role": "system", "content": ANSWER_SYSTEM},
            {"role": "user", "content": ANSWER_USER.format(text=text, question=question)},
        ])
        if isinstance(reply, dict):
            value = reply.get("answer", "")
        else:
            value = reply[0] if reply else ""
        return str(value if value is not None else "").strip()

    def _problem(self, chunk: dict, reason: str) -> None:
        self._count("failed_answers" if reason.startswith("answer") else "failed_chunks")
        with self._lock:
            if len(self.problems) < _MAX_PROBLEMS:
                self.problems.append({"chunk_id": str(chunk.get("id")), "reason": reason[:300]})


def _strings(value: Any, *, key: str) -> list[str]:
    """Strings from a reply field that may be a list of strings, a list of {key: ...} objects or one string."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return []
    out = []
    for item in value:
        if isinstance(item, dict):
            item = item.get(key) or next((v for v in item.values() if isinstance(v, str)), "")
        if isinstance(item, str) and item.strip():
            out.append(item.strip())
    return out
