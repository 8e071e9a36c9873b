"""Optional dense retrieval: a LOCAL sentence-embedding model (Transformers ``AutoModel`` + mean pooling).

Nothing is downloaded: the model must be a directory with ``config.json``. Embeddings are L2-normalised, so the
score is the cosine similarity, and kept as one float32 matrix (exact search; fine up to a few hundred thousand
chunks, beyond that a vector-database backend is the right tool).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from verticalize.kb.base import KBError


class DenseEncoder:
    def __init__(self, model_path: str | Path, *, max_length: int = 512, batch_size: int = 32):
        path = Path(model_path).expanduser()
        if not (path.is_dir() and (path / "config.json").is_file()):
            raise KBError(f"kb.embedding_model '{model_path}' is not a local model directory with config.json; "
                          "give the path of a downloaded sentence-embedding model (nothing is downloaded)")
        from transformers import AutoModel, AutoTokenizer

        self.path = path
        self.max_length = max_length
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        if self.tokenizer.pad_token is None:  # decoder-only models often have none; padding is masked anyway
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.model = AutoModel.from_pretrained(path, local_files_only=True, trust_remote_code=False).eval()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(list(texts[i:i + self.batch_size]), padding=True, truncation=True,
                                       max_length=self.max_length, return_tensors="pt")
                hidden = self.model(**batch).last_hidden_state.float()
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        dim = int(self.model.config.hidden_size)
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, dim), np.float32)


class DenseIndex:
    """Chunk embeddings + the encoder that made them (loaded on first query, so opening stays fast)."""

    DIR = "dense"

    def __init__(self, model_path: str, embeddings: np.ndarray, encoder: DenseEncoder | None = None):
        self.model_path = model_path
        self.embeddings = embeddings
        self._encoder = encoder
        self._lock = threading.Lock()  # the server searches from several threads; load the encoder once

    @classmethod
    def build(cls, model_path: str, texts: Sequence[str]) -> "DenseIndex":
        encoder = DenseEncoder(model_path)
        return cls(model_path, encoder.encode(texts), encoder)

    @property
    def encoder(self) -> DenseEncoder:
        with self._lock:
            if self._encoder is None:
                self._encoder = DenseEncoder(self.model_path)
        return self._encoder

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        if len(self.embeddings) == 0:
            return []
        sims = self.embeddings @ self.encoder.encode([query])[0]
        k = min(k, len(sims))
        top = np.argpartition(-sims, k - 1)[:k]
        top = top[np.argsort(-sims[top], kind="stable")]
        return [(int(i), float(sims[i])) for i in top]

    def save(self, kb_dir: Path) -> None:
        d = Path(kb_dir) / self.DIR
        d.mkdir(parents=True, exist_ok=True)
        # Replace, never overwrite in place: a running server may have the old file memory-mapped.
        with open(d / "embeddings.npy.tmp", "wb") as fh:
            np.save(fh, np.ascontiguousarray(self.embeddings), allow_pickle=False)
        os.replace(d / "embeddings.npy.tmp", d / "embeddings.npy")
        (d / "dense.json").write_text(json.dumps({"model": self.model_path, "dim": int(self.embeddings.shape[1]),
                                                  "pooling": "mean", "normalized": True}), encoding="utf-8")

    @classmethod
    def load(cls, kb_dir: Path) -> "DenseIndex":
        d = Path(kb_dir) / cls.DIR
        meta = json.loads((d / "dense.json").read_text(encoding="utf-8"))
        return cls(meta["model"], np.load(d / "embeddings.npy", mmap_mode="r", allow_pickle=False))
