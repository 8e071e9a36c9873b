"""Dense and hybrid retrieval with a local embedding model (the tiny random Llama: no download)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from verticalize.config import KBConfig
from verticalize.kb import KBError, build_kb, open_kb, rrf_fuse

from test_kb_search import chunk_rows, write_chunks


def test_hybrid_build_fuses_bm25_and_dense_with_rrf(tiny_model_dir: Path, tmp_path: Path):
    chunks = write_chunks(tmp_path / "chunks.jsonl", chunk_rows())
    cfg = KBConfig(embedding_model=str(tiny_model_dir), rrf_k=10)
    manifest = build_kb(chunks, tmp_path / "kb", cfg)
    assert manifest["index"]["dense"] is True and manifest["index"]["embedding_dim"] == 64
    emb = np.load(tmp_path / "kb" / "dense" / "embeddings.npy")
    assert emb.shape == (6, 64) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)

    kb = open_kb(tmp_path / "kb")
    query = "贷款 逾期 restart"
    hits = kb.search(query, 4)
    backend = kb.backend
    lexical = [i for i, _ in backend.lexical(query, 50)]
    dense = [i for i, _ in backend.dense.search(query, 50)]
    assert len(dense) == 6  # the dense retriever ranks every chunk
    expected = rrf_fuse([lexical, dense], k=10)[:4]
    ids = [json.loads(line)["id"] for line in (tmp_path / "kb" / "chunks.jsonl").read_text("utf-8").splitlines()]
    assert [h.chunk_id for h in hits] == [ids[i] for i, _ in expected]
    assert [h.score for h in hits] == pytest.approx([s for _, s in expected], abs=1e-6)
    # Reopening gives the same fused ranking (embeddings and encoder reloaded from disk).
    assert open_kb(tmp_path / "kb").search(query, 4) == hits

    # A rebuild without the embedding model drops the dense index.
    manifest = build_kb(chunks, tmp_path / "kb", KBConfig())
    assert manifest["index"]["dense"] is False and not (tmp_path / "kb" / "dense").exists()
    assert open_kb(tmp_path / "kb").backend.dense is None


def test_embedding_model_must_be_a_local_directory(tmp_path: Path):
    chunks = write_chunks(tmp_path / "chunks.jsonl", chunk_rows())
    with pytest.raises(KBError, match=r"kb.embedding_model 'BAAI/bge-small-zh' is not a local model directory"):
        build_kb(chunks, tmp_path / "kb", KBConfig(embedding_model="BAAI/bge-small-zh"))
