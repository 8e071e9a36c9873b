"""Retrieval scores, for every stage that measures a retriever: kb (``verticalize kb eval``) and evaluate (the
ladder's rag rungs).

Two different questions, two names:
    ``hit_rate_at_k(ranks, k)``      the share of questions with a relevant item in the top k, from each question's
                                     first relevant rank (None: not found). kb's ``recall@k`` figures are this:
                                     a question counts once, found or not.
    ``recall_at_k(ranked, gold, k)`` per question the share of its gold items found in the top k, averaged over the
                                     questions with gold items. The ladder's ``recall@k`` is this; with one gold
                                     item per question the two agree.
``mean_reciprocal_rank`` (ranked lists and gold sets) and ``mrr_of_ranks`` (first relevant ranks) are the one
MRR: the mean of 1/rank of the first relevant item, 0 beyond the cut-off.
"""

from __future__ import annotations

from typing import Iterable, Sequence

__all__ = ["hit_rate_at_k", "mean_reciprocal_rank", "mrr_of_ranks", "recall_at_k"]


def hit_rate_at_k(ranks: Sequence[int | None], k: int) -> float:
    """Share of questions whose first relevant item is ranked ≤ k (0.0 for no question)."""
    return sum(1 for r in ranks if r is not None and r <= k) / len(ranks) if ranks else 0.0


def mrr_of_ranks(ranks: Sequence[int | None], cutoff: int | None = None) -> float:
    """Mean of 1/rank over every question, 0 for one not found (or found beyond ``cutoff``)."""
    if not ranks:
        return 0.0
    return sum(1.0 / r for r in ranks if r is not None and (cutoff is None or r <= cutoff)) / len(ranks)


def recall_at_k(ranked: Sequence[Sequence[str]], gold: Sequence[Iterable[str]], k: int) -> float:
    """Per question the share of its gold items in the top k of ``ranked``, averaged over the questions that
    have gold items (0.0 for none)."""
    scores = []
    for hits, relevant in zip(ranked, gold):
        relevant = set(relevant)
        if relevant:
            scores.append(len(relevant & set(list(hits)[:k])) / len(relevant))
    return sum(scores) / len(scores) if scores else 0.0


def mean_reciprocal_rank(ranked: Sequence[Sequence[str]], gold: Sequence[Iterable[str]],
                         k: int | None = None) -> float:
    """Mean reciprocal rank of the first gold item in the top k (all of ``ranked`` without k), over the
    questions that have gold items."""
    ranks: list[int | None] = []
    for hits, relevant in zip(ranked, gold):
        relevant = set(relevant)
        if relevant:
            hits = list(hits)[:k] if k else list(hits)
            ranks.append(next((i + 1 for i, h in enumerate(hits) if h in relevant), None))
    return mrr_of_ranks(ranks)
