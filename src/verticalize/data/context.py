"""Retrieval-augmented training examples (RAFT): train the adapter the way it will be asked.

At the ``peft+rag`` rung and at the gateway the adapter sees retrieved passages in front of the question. An
adapter trained on the bare question never learned to read them, so each question/answer pair is also written in
that very form (``verticalize.answering.build_messages``, the one answering path):

- the pair's source chunk (the *oracle*) among ``distractors`` passages retrieved from the knowledge base for the
  question — chunks that do not contain the answer — in a seeded random order; the target is the answer;
- in ``1 - oracle_share`` of the examples the oracle is left out (one more distractor takes its place) and the
  target is the refusal phrase, so the model learns to say the documents do not hold the answer;
- ``closed_book_share`` of the pairs keep their closed-book form too, for the ``peft`` rung.

A pair whose oracle cannot be found (a seed question whose answer no retrieved chunk holds) stays closed-book
only: showing it passages that do not support its answer would teach invention.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any, Sequence

from verticalize.answering import Passage, PromptStyle, focus, user_turn
from verticalize.config import Config
from verticalize.data.schema import answer_of, question_of, stable_id
from verticalize.text import normalize

_EXTRA_HITS = 4  # retrieved beyond the distractor count: some hits are the oracle or hold the answer


def _holds(text: str, answer: str) -> bool:
    a = normalize(answer).strip().lower()
    return bool(a) and a in normalize(text).lower()


def _rng(seed: int, ex_id: str) -> random.Random:
    return random.Random(f"{seed}:{ex_id}")


def contextualise(examples: Sequence[dict[str, Any]], chunks_by_id: dict[str, dict[str, Any]], kb: Any,
                  cfg: Config) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The examples of one split in their training forms (retrieval-augmented, refusal, closed-book) and counts."""
    ctx = cfg.data.context
    style = PromptStyle.from_config(cfg)
    out: list[dict[str, Any]] = []
    counts: Counter = Counter()
    for ex in examples:
        meta = ex.get("meta") or {}
        question, answer = question_of(ex), answer_of(ex)
        if meta.get("task") == "classification" or not question.strip() or not answer.strip():
            out.append(ex)
            counts["unchanged"] += 1
            continue
        rng = _rng(cfg.project.seed, ex["id"])
        hits = kb.search(question, ctx.distractors + _EXTRA_HITS + 1)
        oracle = _oracle(meta, hits, chunks_by_id, answer)
        if oracle is None:
            out.append(_closed(ex))
            counts["no_oracle_closed_book"] += 1
            continue
        distractors = [h for h in hits if h.chunk_id != oracle.chunk_id and not _holds(h.text, answer)]
        with_oracle = rng.random() < ctx.oracle_share
        if with_oracle:
            shown = [Passage(focus(oracle.text, question, style.passage_tokens, must_contain=answer),
                             oracle.source, oracle.chunk_id)]
            shown += [_focused(h, question, style) for h in distractors[: ctx.distractors]]
        else:
            shown = [_focused(h, question, style) for h in distractors[: ctx.distractors + 1]]
        if not with_oracle and not shown:  # nothing to refuse from: no passage is not a question we ask
            out.append(_closed(ex))
            counts["no_distractor_closed_book"] += 1
            continue
        rng.shuffle(shown)
        target = answer if with_oracle else style.refusal_for(question)
        out.append(_with_passages(ex, question, target, shown, style, with_oracle))
        counts["with_oracle" if with_oracle else "refusal"] += 1
        if rng.random() < ctx.closed_book_share:
            out.append(_closed(ex))
            counts["closed_book"] += 1
    return out, dict(counts)


def _oracle(meta: dict[str, Any], hits: Sequence[Any], chunks_by_id: dict[str, dict[str, Any]],
            answer: str) -> Passage | None:
    """The chunk the pair was made from (when it holds the answer), else the best retrieved chunk that does."""
    for cid in meta.get("chunk_ids") or []:
        chunk = chunks_by_id.get(cid)
        if chunk is not None and _holds(chunk["text"], answer):
            return Passage(chunk["text"], str(chunk.get("source") or ""), cid)
    hit = next((h for h in hits if _holds(h.text, answer)), None)
    return Passage(hit.text, hit.source, hit.chunk_id) if hit is not None else None


def _focused(hit: Any, question: str, style: PromptStyle) -> Passage:
    return Passage(focus(hit.text, question, style.passage_tokens), hit.source, hit.chunk_id)


def _closed(ex: dict[str, Any]) -> dict[str, Any]:
    return {**ex, "meta": {**ex["meta"], "form": "closed"}}


def _with_passages(ex: dict[str, Any], question: str, target: str, shown: list[Passage], style: PromptStyle,
                   with_oracle: bool) -> dict[str, Any]:
    # No system turn: training prepends project.system_prompt, as for every example (the schema's rule).
    user = {"role": "user", "content": user_turn(question, shown, style, focused=True)}
    form = "rag" if with_oracle else "refusal"
    meta = {**ex["meta"], "form": form, "parent_id": ex["id"], "context_chunk_ids": [p.chunk_id for p in shown],
            "target": target}
    return {"id": stable_id(form, ex["id"]), "messages": [user, {"role": "assistant", "content": target}],
            "meta": meta}
