"""The default backend: BM25 (bm25s) over jieba/word tokens on disk, optionally fused with dense retrieval.

Files in the kb directory: ``bm25/`` (bm25s's sparse score matrix + vocabulary), ``chunks.jsonl`` +
``chunks.offsets.npy`` (the chunk store), and ``dense/`` when ``kb.embedding_model`` is set.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from verticalize.config import KBConfig
from verticalize.kb.base import Backend, Hit, KBError, register_backend
from verticalize.kb.dense import DenseIndex
from verticalize.kb.fusion import rrf_fuse
from verticalize.kb.store import ChunkStore
from verticalize.kb.text import Analyzed, analyze, analyze_many, search_terms, tokenize

# Each retriever contributes at least this many candidates to RRF, so a chunk ranked well by one and moderately
# by the other is not cut before fusion.
MIN_FUSION_CANDIDATES = 50


def index_text(chunk: dict[str, Any]) -> str:
    """The heading path is indexed with the text: questions often name the section, not words of the body."""
    title = chunk.get("title") or ""
    return f"{title}\n{chunk['text']}" if title else chunk["text"]


@register_backend("local")
class LocalBackend(Backend):
    BM25_DIR = "bm25"

    def __init__(self, kb_cfg: KBConfig):
        self.cfg = kb_cfg
        self.bm25: Any = None
        self.store: ChunkStore | None = None
        self.dense: DenseIndex | None = None
        self._built_chunks: list[dict[str, Any]] | None = None  # rows held between build() and save()

    @classmethod
    def create(cls, kb_cfg: KBConfig) -> "LocalBackend":
        return cls(kb_cfg)

    def build(self, chunks: Sequence[dict[str, Any]], analyzed: Sequence[Analyzed] | None = None) -> dict[str, Any]:
        import bm25s

        if analyzed is None:
            analyzed = analyze_many([c["text"] for c in chunks], self.cfg.index_workers)
        title_terms: dict[str, list[str]] = {}  # headings repeat across a document's chunks: segment each once
        vocab: dict[str, int] = {}
        corpus_ids = []  # terms mapped to ids here, in one pass (bm25s would take two over the whole corpus)
        for chunk, (tokens, _) in zip(chunks, analyzed):
            title = chunk.get("title") or ""
            if title not in title_terms:
                title_terms[title] = search_terms(analyze(title)[0]) if title else []
            corpus_ids.append([vocab.setdefault(t, len(vocab)) for t in title_terms[title] + search_terms(tokens)])
        if not vocab:
            raise KBError(f"none of the {len(chunks)} chunks has an indexable word (only stopwords, punctuation "
                          "or symbols); check the ingest output")
        self.bm25 = bm25s.BM25(k1=self.cfg.bm25_k1, b=self.cfg.bm25_b, csc_backend="auto")
        self.bm25.index((corpus_ids, vocab), show_progress=False)
        self._built_chunks = list(chunks)
        self.store = None
        details: dict[str, Any] = {"index_tokens": sum(map(len, corpus_ids)),
                                   "vocabulary": len(self.bm25.vocab_dict) - 1,  # minus bm25s's empty token
                                   "dense": False}
        if self.cfg.embedding_model:
            self.dense = DenseIndex.build(self.cfg.embedding_model, [index_text(c) for c in chunks])
            details.update(dense=True, embedding_model=self.cfg.embedding_model,
                           embedding_dim=int(self.dense.embeddings.shape[1]))
        return details

    # ------------------------------------------------------------------ search
    def __len__(self) -> int:
        return int(self.bm25.scores["num_docs"]) if self.bm25 is not None else 0

    def lexical(self, query: str, n: int) -> list[tuple[int, float]]:
        """Top ``n`` (chunk index, BM25 score) with a positive score, best first."""
        vocab = self.bm25.vocab_dict
        ids = [vocab[t] for t in tokenize(query) if t in vocab]
        if not ids or len(self) == 0:
            return []
        scores = self.bm25.get_scores_from_ids(ids)
        positive = np.flatnonzero(scores > 0)
        if len(positive) > n:
            positive = positive[np.argpartition(-scores[positive], n - 1)[:n]]
        order = positive[np.lexsort((positive, -scores[positive]))]  # score desc, then index: deterministic
        return [(int(i), float(scores[i])) for i in order]

    def search(self, query: str, k: int) -> list[Hit]:
        if self.dense is None:
            ranked = self.lexical(query, k)
        else:
            n = max(k, MIN_FUSION_CANDIDATES)
            lexical = [i for i, _ in self.lexical(query, n)]
            dense = [i for i, _ in self.dense.search(query, n)]
            ranked = rrf_fuse([lexical, dense], k=self.cfg.rrf_k)[:k]
        return [self._hit(i, s) for i, s in ranked]

    def _row(self, index: int) -> dict[str, Any]:
        if self.store is not None:
            return self.store.get(index)
        assert self._built_chunks is not None, "search before build/load"
        return self._built_chunks[index]

    def _hit(self, index: int, score: float) -> Hit:
        row = self._row(index)
        return Hit(chunk_id=row["id"], doc_id=row.get("doc_id") or "", source=row.get("source") or "",
                   text=row["text"], score=round(score, 6))

    # ------------------------------------------------------------------ persistence
    def save(self, out_dir: Path) -> None:
        out_dir = Path(out_dir)
        # Written aside and swapped in: a server may have the previous index memory-mapped, and overwriting
        # those files in place would crash it (SIGBUS); unlinked files stay valid for whoever maps them.
        staging, target = out_dir / (self.BM25_DIR + ".tmp"), out_dir / self.BM25_DIR
        shutil.rmtree(staging, ignore_errors=True)
        self.bm25.save(str(staging), show_progress=False)
        if target.exists():
            old = out_dir / f"{self.BM25_DIR}.old-{os.getpid()}"
            os.replace(target, old)
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, target)
        if self._built_chunks is not None:
            self.store = ChunkStore.write(out_dir, self._built_chunks)
            self._built_chunks = None
        if self.dense is not None:
            self.dense.save(out_dir)
        else:  # a rebuild without an embedding model must not leave the old embeddings to be loaded
            shutil.rmtree(out_dir / DenseIndex.DIR, ignore_errors=True)

    @classmethod
    def load(cls, kb_dir: Path, kb_cfg: KBConfig) -> "LocalBackend":
        import bm25s

        kb_dir = Path(kb_dir)
        backend = cls(kb_cfg)
        # mmap: opening reads the vocabulary only; score arrays are paged in by the first queries.
        backend.bm25 = bm25s.BM25.load(str(kb_dir / cls.BM25_DIR), mmap=True, show_progress=False)
        backend.store = ChunkStore.open(kb_dir)
        if (kb_dir / DenseIndex.DIR).is_dir():
            backend.dense = DenseIndex.load(kb_dir)
        return backend
