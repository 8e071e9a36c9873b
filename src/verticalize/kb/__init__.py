"""Knowledge base: lexical BM25 with CJK segmentation, optional dense retrieval, hybrid RRF fusion, on disk.

Public API (other stages use only this):
    build_kb(chunks_path, out_dir, kb_cfg, *, strict=False) -> dict
                                                         index RUN/ingest/chunks.jsonl into RUN/kb (returns manifest)
    open_kb(kb_dir) -> KnowledgeBase                     fast to open; .search(query, k) -> list[Hit]
    Hit(chunk_id, doc_id, source, text, score)
    kb_stats(kb_dir) -> dict                             the manifest (counts, quality, index details)
    kb_quality(chunks) -> dict                           seed 003's score: ln(effective tokens) × density
    evaluate_kb(kb_dir, questions_path, ks, match, save) recall@k and MRR on answer-span questions (kb/eval.json)
    tokenize(text) / rrf_fuse(rankings, k)               the tokenizer and fusion the index uses
    Backend, register_backend                            the index interface, to add an external engine
"""

from verticalize.kb import local as _local  # noqa: F401  (registers the default "local" backend)
from verticalize.kb.base import Backend, Hit, KBError, KBNotFoundError, backend_names, register_backend
from verticalize.kb.build import KnowledgeBase, build_kb, kb_stats, open_kb, read_chunks
from verticalize.kb.evaluation import Question, evaluate_kb, load_questions, retrieval_metrics
from verticalize.kb.fusion import rrf_fuse
from verticalize.kb.quality import kb_quality
from verticalize.kb.text import tokenize

__all__ = [
    "Backend", "Hit", "KBError", "KBNotFoundError", "KnowledgeBase", "Question", "backend_names", "build_kb",
    "evaluate_kb", "kb_quality", "kb_stats", "load_questions", "open_kb", "read_chunks", "register_backend",
    "retrieval_metrics", "rrf_fuse", "tokenize",
]
