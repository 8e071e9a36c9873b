"""An on-disk chunk store: the chunks as JSONL plus a byte-offset array, read one row at a time.

Opening costs one small array load, whatever the corpus size, so ``open_kb`` stays fast for the server; rows
are read with ``os.pread`` (no shared file position), so concurrent searches from several threads are safe.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np

# Only what a hit needs; the full rows stay in the ingest stage's chunks.jsonl.
STORED_FIELDS = ("id", "doc_id", "source", "title", "text")


class ChunkStore:
    FILE = "chunks.jsonl"
    OFFSETS = "chunks.offsets.npy"

    def __init__(self, directory: Path, offsets: np.ndarray):
        self.path = Path(directory) / self.FILE
        self._offsets = offsets
        self._fd: int | None = os.open(self.path, os.O_RDONLY)  # opened here: no race between searching threads

    @classmethod
    def write(cls, directory: Path, chunks: Iterable[dict[str, Any]]) -> "ChunkStore":
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        offsets = [0]
        tmp = directory / (cls.FILE + ".tmp")
        with open(tmp, "wb") as fh:
            for chunk in chunks:
                row = {f: chunk.get(f) for f in STORED_FIELDS}
                data = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
                fh.write(data)
                offsets.append(offsets[-1] + len(data))
        os.replace(tmp, directory / cls.FILE)
        arr = np.asarray(offsets, dtype=np.int64)
        np.save(directory / cls.OFFSETS, arr, allow_pickle=False)
        return cls(directory, arr)

    @classmethod
    def open(cls, directory: Path) -> "ChunkStore":
        directory = Path(directory)
        return cls(directory, np.load(directory / cls.OFFSETS, allow_pickle=False))

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def get(self, index: int) -> dict[str, Any]:
        if self._fd is None:
            raise ValueError(f"chunk store {self.path} is closed")
        start, end = int(self._offsets[index]), int(self._offsets[index + 1])
        return json.loads(os.pread(self._fd, end - start, start).decode("utf-8"))

    def __iter__(self):
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                yield json.loads(line)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            self.close()
