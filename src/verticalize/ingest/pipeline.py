"""The ingest stage: files -> cleaned, redacted documents -> deduplicated chunks, with a manifest of every file.

Per file: format check, size check (before reading), read (registered reader, encoding detection), clean
(normalise, page furniture, PDF line unwrapping), duplicate-document check, PII redaction, chunking, chunk dedup.
A file that cannot be used is listed with status "skipped" and a reason; nothing else stops the run.
Outputs are written to temporary files and renamed at the end, so a failed or strict-refused run leaves the
previous corpus untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from verticalize.artifacts import write_manifest
from verticalize.config import IngestConfig
from verticalize.encoding import BinaryContentError
from verticalize.errors import UserError
from verticalize.ingest.chunk import chunk_text
from verticalize.ingest.clean import clean_pages
from verticalize.ingest.readers import CorruptFileError, reader_for
from verticalize.ingest.sources import SourceNotFoundError, discover
from verticalize.pii import Redactor
from verticalize.text import NearDuplicateIndex, detect_lang, exact_key

MB = 1024 * 1024
SKIP_REASONS = ("unsupported", "too_large", "empty", "binary", "corrupt", "duplicate", "unreadable")
_PROGRESS_MIN_FILES = 20


class IngestError(UserError, ValueError):
    """strict mode refused the run; the message lists each skipped file and why."""


def doc_id_for(source: str) -> str:
    """Stable short id of a document: a hash of its relative path (and record key for multi-record files)."""
    return hashlib.sha1(source.encode("utf-8")).hexdigest()[:12]


@dataclass
class _Corpus:
    """Accumulated state of one ingest run: dedup indexes, counters, and the open output files."""

    cfg: IngestConfig
    chunks_out: IO[str]
    docs_out: IO[str]
    redactor: Redactor | None
    near: NearDuplicateIndex | None
    exact_keys: dict[str, str] = field(default_factory=dict)
    doc_keys: dict[str, str] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    pii: Counter[str] = field(default_factory=Counter)
    langs: Counter[str] = field(default_factory=Counter)
    dedup_examples: list[dict[str, str]] = field(default_factory=list)


def _write(fh: IO[str], row: dict[str, Any]) -> None:
    fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def _skip(entry: dict[str, Any], reason: str, detail: str) -> dict[str, Any]:
    entry.update(status="skipped", reason=reason, detail=detail)
    return entry


def _process_file(path: Path, rel: str, corpus: _Corpus) -> dict[str, Any]:
    cfg = corpus.cfg
    ext = path.suffix.lower()
    entry: dict[str, Any] = {"source": rel, "path": str(path), "format": ext or "(none)", "status": "ok"}
    try:
        size = path.stat().st_size
    except OSError as e:
        return _skip(entry, "unreadable", f"cannot stat: {e.strerror or e}")
    entry["bytes"] = size
    reader = reader_for(ext)
    if ext not in {f.lower() for f in cfg.formats} or reader is None:
        return _skip(entry, "unsupported", f"extension '{ext or '(none)'}' is not in ingest.formats")
    if size > cfg.max_file_mb * MB:
        return _skip(entry, "too_large", f"{size / MB:.1f} MB > ingest.max_file_mb={cfg.max_file_mb:g}")
    if size == 0:
        return _skip(entry, "empty", "the file has 0 bytes")
    try:
        data = path.read_bytes()
    except OSError as e:
        return _skip(entry, "unreadable", f"cannot read: {e.strerror or e}")
    entry["sha256"] = hashlib.sha256(data).hexdigest()[:16]
    try:
        result = reader(data)
    except BinaryContentError as e:
        return _skip(entry, "binary", str(e))
    except CorruptFileError as e:  # includes EncryptedFileError: the detail says "password-protected"
        return _skip(entry, "corrupt", str(e))
    except Exception as e:  # a reader library failing on odd input must not end the run
        return _skip(entry, "corrupt", f"{type(e).__name__}: {e}")
    if result.encoding:
        entry["encoding"] = result.encoding
    if result.warnings:
        entry["warnings"] = result.warnings
    return _add_documents(entry, rel, result.documents, corpus)


def _add_documents(entry: dict[str, Any], rel: str, raw_docs: list[Any], corpus: _Corpus) -> dict[str, Any]:
    cfg = corpus.cfg
    stats: Counter[str] = Counter()
    pii: Counter[str] = Counter()
    duplicate_of = ""
    for raw in raw_docs:
        text, removed = clean_pages(raw.pages, paged=raw.paged, strip_furniture=cfg.strip_boilerplate)
        stats["boilerplate_lines"] += removed
        if not text:
            stats["empty_records"] += 1
            continue
        source = f"{rel}#{raw.part}" if raw.part else rel
        key = exact_key(text)
        if key in corpus.doc_keys:
            stats["duplicate_records"] += 1
            duplicate_of = corpus.doc_keys[key]
            continue
        corpus.doc_keys[key] = source
        title = raw.title
        if corpus.redactor is not None:
            text, found = corpus.redactor.redact(text)
            title, found_in_title = corpus.redactor.redact(title)
            pii.update(found + found_in_title)
        _emit_document(source, title, text, stats, corpus)
    corpus.pii.update(pii)
    corpus.counts["boilerplate_lines"] += stats["boilerplate_lines"]
    entry.update(documents=stats["documents"], chars=stats["chars"], chunks=stats["chunks"])
    if pii:
        entry["pii"] = dict(sorted(pii.items()))
    if stats["duplicate_chunks"]:
        entry["duplicate_chunks"] = stats["duplicate_chunks"]
    if stats["documents"] == 0:
        if stats["duplicate_records"]:
            return _skip(entry, "duplicate", f"same content as {duplicate_of}")
        reason = "no text layer (scanned? run OCR first)" if entry["format"] == ".pdf" else "no text after cleaning"
        return _skip(entry, "empty", reason)
    skipped_records = stats["duplicate_records"] + stats["empty_records"]
    if skipped_records:
        entry["skipped_records"] = {"duplicate": stats["duplicate_records"], "empty": stats["empty_records"]}
    return entry


def _first_heading(text: str) -> str:
    for line in text.split("\n", 20)[:20]:
        if line.startswith("#"):
            return line.lstrip("#").strip()
    return ""


def _emit_document(source: str, title: str, text: str, stats: Counter[str], corpus: _Corpus) -> None:
    cfg = corpus.cfg
    doc_id = doc_id_for(source)
    lang = detect_lang(text[:20000])
    _write(corpus.docs_out, {"doc_id": doc_id, "source": source, "title": title or _first_heading(text),
                             "text": text, "lang": lang})
    corpus.langs[lang] += 1
    stats["documents"] += 1
    stats["chars"] += len(text)
    for n, chunk in enumerate(chunk_text(text, cfg.chunk_chars, cfg.chunk_overlap, cfg.min_chunk_chars)):
        chunk_id = f"{doc_id}:{n:04d}"  # numbered before dedup, so ids stay stable when dedup settings change
        if _is_duplicate_chunk(chunk_id, chunk.text, corpus):
            stats["duplicate_chunks"] += 1
            continue
        _write(corpus.chunks_out, {"id": chunk_id, "doc_id": doc_id, "source": source, "title": chunk.title,
                                   "text": chunk.text, "start": chunk.start, "lang": detect_lang(chunk.text)})
        stats["chunks"] += 1


def _is_duplicate_chunk(chunk_id: str, text: str, corpus: _Corpus) -> bool:
    if corpus.cfg.dedup == "none":
        return False
    key = exact_key(text)
    original = corpus.exact_keys.get(key)
    kind = "exact"
    if original is None and corpus.near is not None:
        original = corpus.near.add(chunk_id, text)
        kind = "near"
    if original is None:
        corpus.exact_keys[key] = chunk_id
        return False
    corpus.counts[f"dedup_{kind}"] += 1
    if len(corpus.dedup_examples) < 20:
        corpus.dedup_examples.append({"dropped": chunk_id, "duplicate_of": original, "kind": kind})
    return True


def _progress(total: int) -> Progress:
    return Progress(TextColumn("ingest"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    TextColumn("{task.description}"), console=Console(stderr=True), transient=True,
                    disable=total < _PROGRESS_MIN_FILES)


def ingest(sources: list[str], out_dir: str | Path, ingest_cfg: IngestConfig, *, strict: bool = False) -> dict:
    """Ingest documents from folders, files or globs into ``out_dir`` (the run's ``ingest`` directory).

    Writes chunks.jsonl, documents.jsonl and manifest.json; returns the manifest. Every input file appears in
    ``manifest["files"]`` with status "ok" or "skipped" and a reason. With ``strict`` any skipped file raises
    IngestError listing them all, and nothing is written.
    """
    if not sources:
        raise SourceNotFoundError("no document sources given: pass folders/files/globs or set project.docs")
    started = time.perf_counter()
    files, hidden = discover([str(s) for s in sources])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chunks_tmp, docs_tmp = out / "chunks.jsonl.tmp", out / "documents.jsonl.tmp"
    pii_cfg = ingest_cfg.pii
    entries: list[dict[str, Any]] = []
    with open(chunks_tmp, "w", encoding="utf-8") as chunks_out, open(docs_tmp, "w", encoding="utf-8") as docs_out:
        corpus = _Corpus(
            cfg=ingest_cfg, chunks_out=chunks_out, docs_out=docs_out,
            redactor=Redactor(pii_cfg.kinds) if pii_cfg.enabled else None,
            near=NearDuplicateIndex(ingest_cfg.near_dup_threshold) if ingest_cfg.dedup == "near" else None)
        with _progress(len(files)) as progress:
            task = progress.add_task("", total=len(files))
            for path, rel in files:
                progress.update(task, description=rel[-40:])
                entries.append(_process_file(path, rel, corpus))
                progress.advance(task)
    skipped = [e for e in entries if e["status"] == "skipped"]
    if strict and skipped:
        chunks_tmp.unlink(missing_ok=True)
        docs_tmp.unlink(missing_ok=True)
        lines = "\n  ".join(f"{e['source']}: {e['reason']} ({e['detail']})" for e in skipped)
        raise IngestError(f"--strict: {len(skipped)} of {len(entries)} input file(s) were skipped:\n  {lines}")
    os.replace(chunks_tmp, out / "chunks.jsonl")
    os.replace(docs_tmp, out / "documents.jsonl")
    counts = _counts(entries, corpus, hidden, time.perf_counter() - started)
    return write_manifest(
        out, "ingest",
        inputs={"sources": [str(s) for s in sources],
                "files": {e["source"]: e.get("sha256", e.get("bytes")) for e in entries}},
        config=ingest_cfg.model_dump(mode="json"), counts=counts,
        extra={"files": entries, "dedup_examples": corpus.dedup_examples,
               "outputs": {"chunks": "chunks.jsonl", "documents": "documents.jsonl"}})


def _counts(entries: list[dict[str, Any]], corpus: _Corpus, hidden: int, seconds: float) -> dict[str, Any]:
    by_reason = Counter(e["reason"] for e in entries if e["status"] == "skipped")
    ok = [e for e in entries if e["status"] == "ok"]
    read_bytes = sum(e.get("bytes", 0) for e in ok)
    return {
        "files": len(entries),
        "files_ok": len(ok),
        "files_skipped": len(entries) - len(ok),
        "skipped_by_reason": {r: by_reason[r] for r in SKIP_REASONS if by_reason[r]},
        "hidden_ignored": hidden,
        "documents": sum(e.get("documents", 0) for e in ok),
        "chunks": sum(e.get("chunks", 0) for e in ok),
        "chars": sum(e.get("chars", 0) for e in ok),
        "bytes": read_bytes,
        "languages": dict(corpus.langs),
        "pii": dict(sorted(corpus.pii.items())),
        "dedup": {"exact": corpus.counts["dedup_exact"], "near": corpus.counts["dedup_near"]},
        "boilerplate_lines": corpus.counts["boilerplate_lines"],
        "seconds": round(seconds, 3),
        "mb_per_min": round(read_bytes / MB / max(seconds, 1e-9) * 60, 2),
    }
