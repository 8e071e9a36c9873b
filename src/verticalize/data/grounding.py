"""Grounding filter: keep only question/answer pairs whose answer is supported by the chunk they came from.

Support is lexical: the share of the answer's match tokens (``verticalize.text.tokens_for_match``: characters for
CJK, words for other scripts, after normalisation) that also occur in the chunk text must reach the threshold, and
every number in the answer must occur in the chunk.
The rules generator builds answers from spans of the chunk, so its answers pass by construction; the check is
what catches a teacher model answering from its own memory. Examples without chunk ids (human seed data) are not
generated from a chunk and pass through unchecked.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable

from verticalize.data.schema import answer_of, question_of
from verticalize.text import normalize, tokens_for_match

_NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")

# Drop reasons (the keys of the returned Counter).
EMPTY_ANSWER = "empty_answer"
EMPTY_QUESTION = "empty_question"
CHUNK_NOT_FOUND = "chunk_not_found"
ANSWER_NOT_IN_CHUNK = "answer_not_in_chunk"
NUMBER_NOT_IN_CHUNK = "number_not_in_chunk"
QUESTION_CONTAINS_ANSWER = "question_contains_answer"


def support_share(answer: str, context: str) -> float:
    """Share of ``answer``'s match tokens found in ``context`` (1.0 for an answer with no tokens)."""
    answer_tokens = tokens_for_match(answer)
    if not answer_tokens:
        return 1.0
    context_tokens = set(tokens_for_match(context))
    found = sum(1 for t in answer_tokens if t in context_tokens)
    return found / len(answer_tokens)


def missing_numbers(answer: str, context: str) -> list[str]:
    """Numbers in ``answer`` that the context never states: a wrong amount or date is the costliest
    hallucination and weighs little in a token share (one token among many). Numbers are read on their own
    (thousands separators dropped), so "GDP4.8亿" states 4.8 and "1,000" equals "1000"."""
    stated = set(_numbers(context))
    return [n for n in _numbers(answer) if n not in stated]


def _numbers(text: str) -> list[str]:
    return [m.replace(",", "") for m in _NUMBER.findall(normalize(text))]


def drop_reason(example: dict, chunks_by_id: dict[str, dict], threshold: float) -> str | None:
    """Why ``example`` is not grounded (one of the reason constants), or None when it is kept."""
    question, answer = question_of(example), answer_of(example)
    norm_q, norm_a = normalize(question).strip(), normalize(answer).strip()
    if not norm_a:
        return EMPTY_ANSWER
    if not norm_q:
        return EMPTY_QUESTION
    meta = example.get("meta") or {}
    if meta.get("task") == "classification":
        return None  # the answer is a label, not a span of text
    chunk_ids = meta.get("chunk_ids") or []
    if not chunk_ids:
        return None
    chunks = [chunks_by_id.get(cid) for cid in chunk_ids]
    if any(c is None for c in chunks):
        return CHUNK_NOT_FOUND
    if norm_a.casefold() in norm_q.casefold():
        return QUESTION_CONTAINS_ANSWER
    context = "\n".join(c.get("text", "") for c in chunks if c)
    if missing_numbers(answer, context):
        return NUMBER_NOT_IN_CHUNK
    if support_share(answer, context) < threshold:
        return ANSWER_NOT_IN_CHUNK
    return None


def grounding_filter(examples: Iterable[dict], chunks_by_id: dict[str, dict],
                     threshold: float) -> tuple[list[dict], Counter]:
    """Split ``examples`` into the kept list and a Counter of drop reasons (order of kept examples preserved)."""
    kept: list[dict] = []
    dropped: Counter = Counter()
    for example in examples:
        reason = drop_reason(example, chunks_by_id, threshold)
        if reason is None:
            kept.append(example)
        else:
            dropped[reason] += 1
    return kept, dropped
