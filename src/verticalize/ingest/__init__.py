"""Ingest: documents in many formats and encodings -> cleaned, PII-redacted, deduplicated chunks.

Public API:
    ingest(sources, out_dir, ingest_cfg, *, strict=False) -> manifest dict
        writes out_dir/chunks.jsonl, documents.jsonl, manifest.json (every input file with status and reason)
    manifest_summary(run_dir) -> rich renderable          the `verticalize ingest show` tables
    chunk_text(text, chunk_chars, overlap, min_chars) -> list[Chunk]   structure-aware chunking
    register_reader(*extensions)                         add a reader for another format
    IngestError (strict refusal), SourceNotFoundError (a source that does not exist)

PII redaction (``Redactor``, ``redact``) and encoding detection (``decode_bytes``) are shared by other stages and
live outside the stages: ``verticalize.pii`` and ``verticalize.encoding``.
"""

from verticalize.ingest.chunk import Chunk, chunk_text
from verticalize.ingest.pipeline import IngestError, doc_id_for, ingest
from verticalize.ingest.readers import RawDocument, ReadResult, register_reader
from verticalize.ingest.show import manifest_summary
from verticalize.ingest.sources import SourceNotFoundError

__all__ = [
    "ingest", "manifest_summary", "IngestError", "SourceNotFoundError", "doc_id_for",
    "Chunk", "chunk_text", "register_reader", "RawDocument", "ReadResult",
]
