"""Reciprocal rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009).

RRF needs no score calibration between retrievers (BM25 scores and cosine similarities live on different scales),
only ranks: score(d) = Σ_rankings 1 / (k + rank(d)), ranks starting at 1. k (60 in the paper) damps the weight
of the very top ranks so that one retriever's first place does not outvote agreement between retrievers.
"""

from __future__ import annotations

from typing import Hashable, Sequence, TypeVar

T = TypeVar("T", bound=Hashable)


def rrf_fuse(rankings: Sequence[Sequence[T]], k: int = 60) -> list[tuple[T, float]]:
    """Fuse ranked lists of ids (best first) into one list of (id, RRF score), best first.

    Ties keep the order of first appearance (earlier rankings first), so results are deterministic.
    """
    if k < 1:
        raise ValueError(f"rrf k must be >= 1, got {k}")
    scores: dict[T, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    order = {item: i for i, item in enumerate(scores)}
    return sorted(scores.items(), key=lambda kv: (-kv[1], order[kv[0]]))
