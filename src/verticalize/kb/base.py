"""The search-backend interface, the hit record and the backend registry.

A backend owns an index over chunks and answers ``search(query, k)`` with ranked :class:`Hit` s. The knowledge
base (``build_kb`` / ``open_kb``) only talks to this interface, and the rest of the pipeline only talks to the
knowledge base, so a corpus that outgrows one machine moves to another engine by registering a backend and setting
``kb.backend`` — eval and serve do not change.

Writing a backend for an external engine (Elasticsearch/OpenSearch, a vector database):

* ``create(kb_cfg)``: read connection settings (from the environment, never from the manifest: keys must not be
  written to disk).
* ``build(chunks)``: push every chunk (``id``, ``doc_id``, ``source``, ``title``, ``text``) into the engine — for
  Elasticsearch an index whose ``text``/``title`` fields use a Chinese analyzer (``ik_max_word`` at index time and
  ``ik_smart`` at search time from the IK plugin, or the bundled ``smartcn``) — and return counts for the manifest.
* ``save(dir)``: write what is needed to reconnect (index name, engine version), no data.
* ``load(dir, kb_cfg)``: reconnect; ``search`` maps the engine's ranked results onto ``Hit``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from verticalize.config import KBConfig
from verticalize.errors import UserError
from verticalize.kb.text import Analyzed


class KBError(UserError, ValueError):
    """A knowledge-base input or setting that cannot be used; the message says what, where and what to do."""


class KBNotFoundError(UserError, FileNotFoundError):
    """No built knowledge base (or no chunks) where one was expected."""


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk. ``score`` is the backend's score (BM25, cosine, or RRF when fused): higher is better."""

    chunk_id: str
    doc_id: str
    source: str
    text: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Backend(ABC):
    """An index over chunks. Chunks are dicts in the ingest contract (id, doc_id, source, title, text, ...)."""

    name: str = ""

    @classmethod
    @abstractmethod
    def create(cls, kb_cfg: KBConfig) -> "Backend":
        """A new, empty backend for these settings."""

    @abstractmethod
    def build(self, chunks: Sequence[dict[str, Any]], analyzed: Sequence[Analyzed] | None = None) -> dict[str, Any]:
        """Index ``chunks`` (replacing any previous content); return counts/details for the manifest.

        ``analyzed`` (aligned with ``chunks``) is ``text.analyze(chunk["text"])``, already computed by build_kb
        for the quality score; a backend with its own analyzer ignores it."""

    @abstractmethod
    def search(self, query: str, k: int) -> list[Hit]:
        """At most ``k`` hits, best first. Chunks that do not match at all are not returned."""

    @abstractmethod
    def save(self, out_dir: Path) -> None:
        """Persist into ``out_dir`` (the kb stage directory)."""

    @classmethod
    @abstractmethod
    def load(cls, kb_dir: Path, kb_cfg: KBConfig) -> "Backend":
        """Reopen what ``save`` wrote."""


_BACKENDS: dict[str, type[Backend]] = {}


def register_backend(name: str) -> Callable[[type[Backend]], type[Backend]]:
    """Class decorator: make a backend available as ``kb.backend: <name>``."""

    def deco(cls: type[Backend]) -> type[Backend]:
        cls.name = name
        _BACKENDS[name] = cls
        return cls

    return deco


def backend_class(name: str) -> type[Backend]:
    if name not in _BACKENDS:
        raise KBError(f"unknown kb.backend '{name}'; registered backends: {', '.join(sorted(_BACKENDS))}")
    return _BACKENDS[name]


def backend_names() -> list[str]:
    return sorted(_BACKENDS)
