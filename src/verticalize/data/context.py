"""Retrieval-augmented training examples (RAFT): train the adapter the way it will be asked.

At the ``peft+rag`` rung and at the gateway the adapter sees retrieved passages in front of the question. An
adapter trained on the bare question never learned to read them, so each question/answer pair is also written in
that very form (``verticalize.answering.build_messages``, the one answering path):

- the pair's source chunk (the *oracle*) among ``distractors`` passages retrieved from the knowledge base for the
  question — chunks that do not contain the answer — in a seeded random order; the target is the answer;
- in ``1 - oracle_share`` of the examples the oracle is left out (one more distractor takes its place) and the
  target is the refusal phrase, so the model learns to say the documents do not hold the answer;
- ``near_miss_share`` of those refusals are *near misses*: the oracle is shown with the sentences that hold the
  answer cut out, so the passages are on the question's topic and still do not answer it (the hard case: SQuAD
  2.0's unanswerable questions are written against the very paragraph they cannot be answered from). Off by
  default: on SmolLM2-135M half near misses made the adapter refuse 21 % of answerable CMRC questions (4 %
  without) while its refusals on SQuAD 2.0 stayed at chance (AUC 0.50) — a larger base may learn the difference;
- ``closed_book_share`` of the pairs keep their closed-book form too, for the ``peft`` rung;
- a small corpus gives few pairs: each pair of the train split is then written in up to ``_MAX_VARIANTS`` forms
  (other distractors, other order, oracle or refusal drawn anew) until about ``target_examples`` are made, so
  the training budget is spent on reading practice instead of repeating the same prompts epoch after epoch.

A pair whose oracle cannot be found (a seed question whose answer no retrieved chunk holds) stays closed-book
only: showing it passages that do not support its answer would teach invention.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any, Sequence

from verticalize.answering import Passage, PromptStyle, focus, sentences, user_turn
from verticalize.config import Config
from verticalize.data.schema import answer_of, question_of, stable_id
from verticalize.text import detect_lang, normalize

_EXTRA_HITS = 4  # retrieved beyond the distractor count: some hits are the oracle or hold the answer
_MAX_VARIANTS = 4  # forms per pair on a small corpus: more would mostly repeat the same distractors
_MIN_NEAR_MISS_CHARS = 80  # what is left of the oracle must still be a passage worth reading


def _holds(text: str, answer: str) -> bool:
    a = normalize(answer).strip().lower()
    return bool(a) and a in normalize(text).lower()


def _rng(seed: int, ex_id: str) -> random.Random:
    return random.Random(f"{seed}:{ex_id}")


def contextualise(examples: Sequence[dict[str, Any]], chunks_by_id: dict[str, dict[str, Any]], kb: Any,
                  cfg: Config, *, train: bool = True) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The examples of one split in their training forms (retrieval-augmented, refusal, closed-book) and counts.
    ``train`` False (validation): one form per pair, so validation loss stays comparable across corpora."""
    ctx = cfg.data.context
    style = PromptStyle.from_config(cfg)
    out: list[dict[str, Any]] = []
    counts: Counter = Counter()
    variants = _variants(len(examples), ctx.target_examples) if train else 1
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
        # focused once per pair: every form of the pair shows the same windows, in other draws
        pool = [_focused(h, question, style) for h in hits
                if h.chunk_id != oracle.chunk_id and not _holds(h.text, answer)]
        shown_oracle = Passage(focus(oracle.text, question, style.passage_tokens, must_contain=answer),
                               oracle.source, oracle.chunk_id)
        near_miss = _without_answer(oracle, answer)  # also with the share at 0: whether one exists draws rng
        if near_miss is not None:
            near_miss = _focused(near_miss, question, style)
        made = 0
        for variant in range(variants):
            # the first form takes the best-ranked distractors; further forms draw others from the pool
            distractors = pool if variant == 0 else rng.sample(pool, len(pool))
            with_oracle = rng.random() < ctx.oracle_share
            if with_oracle:
                shown = [shown_oracle, *distractors[: ctx.distractors]]
                form = "with_oracle"
            elif near_miss is not None and rng.random() < ctx.near_miss_share:
                shown = [near_miss, *distractors[: ctx.distractors]]
                form = "near_miss_refusal"
            else:
                shown = list(distractors[: ctx.distractors + 1])
                form = "refusal"
            if not shown:  # nothing to refuse from: no passage is not a question we ask
                counts["no_distractor"] += 1
                continue
            rng.shuffle(shown)
            target = answer if with_oracle else style.refusal_for(question)
            out.append(_with_passages(ex, question, target, shown, style, with_oracle, variant))
            counts[form] += 1
            made += 1
        if rng.random() < ctx.closed_book_share or not made:
            out.append(_closed(ex))
            counts["closed_book"] += 1
    if variants > 1:
        counts["forms_per_pair"] = variants
    return out, dict(counts)


def _variants(n_pairs: int, target_examples: int) -> int:
    """Forms per pair so that about ``target_examples`` retrieval-augmented examples are made (1..4)."""
    if n_pairs <= 0 or target_examples <= 0:
        return 1
    return max(1, min(_MAX_VARIANTS, round(target_examples / n_pairs)))


def _without_answer(oracle: Passage, answer: str) -> Passage | None:
    """The oracle with every sentence that holds the answer cut out, or None when too little is left."""
    kept = [s for s in sentences(oracle.text) if not _holds(s, answer)]
    text = (" " if detect_lang(oracle.text) == "en" else "").join(kept)
    if len(text) < _MIN_NEAR_MISS_CHARS or _holds(text, answer):
        return None
    return Passage(text, oracle.source, oracle.chunk_id)


def _oracle(meta: dict[str, Any], hits: Sequence[Any], chunks_by_id: dict[str, dict[str, Any]],
            answer: str) -> Passage | None:
    """The chunk the pair was made from (when it holds the answer), else the best retrieved chunk that does."""
    for cid in meta.get("chunk_ids") or []:
        chunk = chunks_by_id.get(cid)
        if chunk is not None and _holds(chunk["text"], answer):
            return Passage(chunk["text"], str(chunk.get("source") or ""), cid)
    hit = next((h for h in hits if _holds(h.text, answer)), None)
    return Passage(hit.text, hit.source, hit.chunk_id) if hit is not None else None


def _focused(hit: Any, question: str, style: PromptStyle) -> Passage:  # a KB hit or a Passage
    return Passage(focus(hit.text, question, style.passage_tokens), hit.source, hit.chunk_id)


def _closed(ex: dict[str, Any]) -> dict[str, Any]:
    return {**ex, "meta": {**ex["meta"], "form": "closed"}}


def _with_passages(ex: dict[str, Any], question: str, target: str, shown: list[Passage], style: PromptStyle,
                   with_oracle: bool, variant: int = 0) -> dict[str, Any]:
    # No system turn: training prepends project.system_prompt, as for every example (the schema's rule).
    user = {"role": "user", "content": user_turn(question, shown, style, focused=True)}
    form = "rag" if with_oracle else "refusal"
    meta = {**ex["meta"], "form": form, "parent_id": ex["id"], "context_chunk_ids": [p.chunk_id for p in shown],
            "target": target}
    ex_id = stable_id(form, ex["id"]) if variant == 0 else stable_id(form, ex["id"], variant)
    return {"id": ex_id, "messages": [user, {"role": "assistant", "content": target}],
            "meta": meta}
