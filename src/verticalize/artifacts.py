"""Run-directory layout and manifests: the only link between stages.

A run directory holds one sub-directory per stage; each stage writes its files there plus a ``manifest.json``
(inputs, resolved config, counts, library versions, a fingerprint). A later stage reads an earlier stage's
artifact only through these paths and manifests, never through its internals. The fingerprint lets the main job
skip a stage whose inputs and config did not change.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Iterator

STAGES = ("ingest", "kb", "data", "train", "eval", "report", "export", "feedback")

_VERSIONED = ("verticalize", "torch", "transformers", "peft", "trl", "accelerate", "bm25s", "jieba")


@dataclass(frozen=True)
class RunDir:
    """Paths of one run. ``RunDir("runs/x").stage("train")`` → ``runs/x/train``."""

    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    def stage(self, name: str) -> Path:
        if name not in STAGES:
            raise ValueError(f"unknown stage '{name}'; stages are {', '.join(STAGES)}")
        return self.root / name

    # The files each stage publishes (the contract between stages).
    @property
    def chunks(self) -> Path:  # ingest → kb, data
        return self.stage("ingest") / "chunks.jsonl"

    @property
    def kb_dir(self) -> Path:  # kb → eval, serve
        return self.stage("kb")

    def dataset_split(self, split: str) -> Path:  # data → train, eval
        return self.stage("data") / f"{split}.jsonl"

    @property
    def adapters_dir(self) -> Path:  # train → eval, serve, export (one sub-directory per stage adapter)
        return self.stage("train") / "adapters"

    def ensure(self, name: str) -> Path:
        path = self.stage(name)
        path.mkdir(parents=True, exist_ok=True)
        return path


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def fingerprint(*parts: Any) -> str:
    """A stable hash of JSON-able parts (config sections, input fingerprints)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def file_fingerprint(path: str | Path) -> str:
    """Content hash of a file, or of every file under a directory (names and contents)."""
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p]
    for f in files:
        h.update(str(f.relative_to(p) if p.is_dir() else f.name).encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def write_manifest(stage_dir: str | Path, stage: str, *, inputs: dict[str, Any], config: dict[str, Any],
                   counts: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``manifest.json`` atomically and return it."""
    stage_dir = Path(stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "stage": stage,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "inputs": inputs,
        "config": config,
        "counts": counts,
        "versions": library_versions(),
        "fingerprint": fingerprint(stage, inputs, config),
        **(extra or {}),
    }
    write_json(stage_dir / "manifest.json", manifest)
    return manifest


def read_manifest(stage_dir: str | Path) -> dict[str, Any]:
    path = Path(stage_dir) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"no manifest at {path}: run the stage that writes {Path(stage_dir).name} first")
    return json.loads(path.read_text(encoding="utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    """Atomic JSON write (temp file + rename) so an interrupted run never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Rows of a JSONL file we wrote ourselves (user files go through the data stage's tolerant readers)."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)
