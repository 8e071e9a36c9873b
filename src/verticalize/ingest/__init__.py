"""Ingest: documents in many formats and encodings -> cleaned, PII-redacted, deduplicated chunks.

Public API:
    ingest(sources, out_dir, ingest_cfg, *, strict=False) -> manifest dict
        writes out_dir/chunks.jsonl, documents.jsonl, manifest.json (every input file with status and reason)
    manifest_summary(run_dir) -> rich renderable          the `verticalize ingest show` tables
    Redactor(kinds).redact(text) -> (text, counts); redact(text, kinds); PII_KINDS; PLACEHOLDERS
    chunk_text(text, chunk_chars, overlap, min_chars) -> list[Chunk]   structure-aware chunking
    register_reader(*extensions)                         add a reader for another format
    decode_bytes(data) -> (text, encoding)               encoding detection
    IngestError (strict refusal), SourceNotFoundError (a source that does not exist)
"""

from verticalize.ingest.chunk import Chunk, chunk_text
from verticalize.ingest.encoding import BinaryContentError, decode_bytes
from verticalize.ingest.pii import PII_KINDS, PLACEHOLDERS, Redactor, redact
from verticalize.ingest.pipeline import IngestError, doc_id_for, ingest
from verticalize.ingest.readers import RawDocument, ReadResult, register_reader
from verticalize.ingest.show import manifest_summary
from verticalize.ingest.sources import SourceNotFoundError

__all__ = [
    "ingest", "manifest_summary", "IngestError", "SourceNotFoundError", "doc_id_for",
    "Redactor", "redact", "PII_KINDS", "PLACEHOLDERS",
    "Chunk", "chunk_text", "register_reader", "RawDocument", "ReadResult", "decode_bytes", "BinaryContentError",
]
