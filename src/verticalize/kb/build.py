"""Building and opening a knowledge base: ``build_kb`` (chunks.jsonl → kb directory) and ``open_kb``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

from verticalize.artifacts import file_fingerprint, write_manifest
from verticalize.config import KBConfig
from verticalize.kb.base import Backend, Hit, KBError, KBNotFoundError, backend_class
from verticalize.kb.quality import kb_quality
from verticalize.kb.text import Analyzed, analyze_many

# The manifest lists this many refused rows with their reasons (the count is always complete).
MAX_LISTED_REFUSALS = 50


def read_chunks(path: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Chunks from an ingest ``chunks.jsonl`` and the refused rows as {line, reason}; bad rows never stop it."""
    path = Path(path)
    if not path.is_file():
        raise KBNotFoundError(f"no chunks at {path}: run `verticalize ingest` first (it writes ingest/chunks.jsonl)")
    chunks: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    first_line: dict[str, int] = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            reason = None
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                row, reason = None, f"not valid JSON ({e.msg})"
            if reason is None:
                reason = _row_problem(row, first_line)
            if reason is not None:
                refused.append({"line": lineno, "reason": reason})
                continue
            first_line[row["id"]] = lineno
            chunks.append(row)
    return chunks, refused


def _row_problem(row: Any, first_line: dict[str, int]) -> str | None:
    if not isinstance(row, dict):
        return f"not a JSON object (got {type(row).__name__})"
    if not isinstance(row.get("id"), str) or not row["id"].strip():
        return "missing or empty 'id'"
    if not isinstance(row.get("text"), str) or not row["text"].strip():
        return "missing or empty 'text'"
    if row["id"] in first_line:
        return f"duplicate chunk id '{row['id']}' (first on line {first_line[row['id']]})"
    return None


def build_kb(chunks_path: str | Path, out_dir: str | Path, kb_cfg: KBConfig, *, strict: bool = False,
             analyzed: Sequence[Analyzed] | None = None) -> dict[str, Any]:
    """Index the chunks into ``out_dir`` with the configured backend; write and return the kb manifest.

    Refused rows are listed in the manifest and the rest is indexed; ``strict`` refuses the build instead.
    ``analyzed``: the segmentation of each accepted chunk's text (``text.analyze_many``), when the caller already
    has it — segmentation is most of the build time.
    """
    chunks_path, out_dir = Path(chunks_path), Path(out_dir)
    t0 = time.perf_counter()
    chunks, refused = read_chunks(chunks_path)
    if not chunks:
        reasons = "; ".join(f"line {r['line']}: {r['reason']}" for r in refused[:3])
        raise KBError(f"no usable chunks in {chunks_path}" + (f" ({len(refused)} refused: {reasons})" if refused
                                                               else " (the file is empty)"))
    if strict and refused:
        listed = "\n  ".join(f"line {r['line']}: {r['reason']}" for r in refused[:MAX_LISTED_REFUSALS])
        raise KBError(f"--strict: {len(refused)} row(s) of {chunks_path} refused:\n  {listed}")
    if analyzed is not None and len(analyzed) != len(chunks):
        raise KBError(f"analyzed has {len(analyzed)} entries for {len(chunks)} accepted chunks")
    backend = backend_class(kb_cfg.backend).create(kb_cfg)
    t1 = time.perf_counter()
    # Segmentation is the slow part; done once, it feeds both the index and the quality score.
    if analyzed is None:
        analyzed = analyze_many([c["text"] for c in chunks], kb_cfg.index_workers)
    t2 = time.perf_counter()
    details = backend.build(chunks, analyzed)
    t3 = time.perf_counter()
    # Until here the previous KB is untouched. No manifest means "not built": an interrupted save must not
    # look like a finished build.
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)
    backend.save(out_dir)
    t4 = time.perf_counter()
    quality = kb_quality(chunks, analyzed)
    t5 = time.perf_counter()
    return write_manifest(
        out_dir, "kb",
        inputs={"chunks": str(chunks_path), "chunks_fingerprint": file_fingerprint(chunks_path)},
        config=kb_cfg.model_dump(mode="json"),
        counts={"chunks": len(chunks), "refused": len(refused), "documents": quality["documents"]},
        extra={"backend": backend.name, "index": details, "quality": quality,
               "refused": refused[:MAX_LISTED_REFUSALS],
               "timings_s": {"read": round(t1 - t0, 3), "segment": round(t2 - t1, 3), "index": round(t3 - t2, 3),
                             "save": round(t4 - t3, 3), "quality": round(t5 - t4, 3)}})


class KnowledgeBase:
    """A built knowledge base: ``search(query, k)`` → hits, best first. Safe to share between threads."""

    def __init__(self, kb_dir: Path, backend: Backend, manifest: dict[str, Any]):
        self.dir = kb_dir
        self.backend = backend
        self.manifest = manifest
        self.config = KBConfig.model_validate(manifest["config"])

    def search(self, query: str, k: int | None = None) -> list[Hit]:
        k = self.config.top_k if k is None else k
        if not isinstance(k, int) or k < 1:
            raise KBError(f"k must be a positive integer, got {k!r}")
        if not isinstance(query, str):
            raise KBError(f"query must be a string, got {type(query).__name__}")
        if not query.strip():
            return []
        return self.backend.search(query, k)

    def __len__(self) -> int:
        return int(self.manifest["counts"]["chunks"])

    @property
    def quality(self) -> dict[str, Any]:
        return self.manifest.get("quality", {})


def _locate(kb_dir: str | Path) -> tuple[Path, dict[str, Any]]:
    """The kb directory (given itself or the run directory holding it) and its manifest."""
    kb_dir = Path(kb_dir)
    if not (kb_dir / "manifest.json").is_file() and (kb_dir / "kb" / "manifest.json").is_file():
        kb_dir = kb_dir / "kb"
    manifest_path = kb_dir / "manifest.json"
    if not manifest_path.is_file():
        raise KBNotFoundError(f"no knowledge base at {kb_dir}: run `verticalize kb build` first")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("stage") != "kb":
        raise KBError(f"{manifest_path} is a '{manifest.get('stage')}' manifest, not a knowledge base")
    return kb_dir, manifest


def kb_stats(kb_dir: str | Path) -> dict[str, Any]:
    """The kb manifest (counts, index details, quality score, refused rows) without loading the index."""
    return _locate(kb_dir)[1]


def open_kb(kb_dir: str | Path) -> KnowledgeBase:
    """Open a built knowledge base: its directory (``RUN/kb``) or the run directory that holds it."""
    kb_dir, manifest = _locate(kb_dir)
    cfg = KBConfig.model_validate(manifest["config"])
    backend = backend_class(manifest.get("backend", cfg.backend)).load(kb_dir, cfg)
    return KnowledgeBase(kb_dir, backend, manifest)
