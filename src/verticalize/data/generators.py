"""Distillation generators: document chunks in, question/answer examples (contract schema) out.

Two generators share one interface: ``rules`` (offline, deterministic; see ``rules.py``) and ``llm`` (any
OpenAI-compatible teacher; see ``teacher_generator.py``). ``make_generators`` builds the ones ``data.generator`` names.
Every example a generator yields has ``meta.kind == "synthetic"``, its chunk id(s), doc id and source, and an id
that is a stable hash of (chunk id, generator, question) so reruns and reorderings keep ids.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterator, Protocol, runtime_checkable

from verticalize.config import DataConfig
from verticalize.data import schema


@runtime_checkable
class Generator(Protocol):
    """Turns chunks (rows of ``chunks.jsonl``) into examples in the dataset contract schema.

    ``generate`` yields lazily, in chunk order (wrap it in a progress bar); ``report`` returns what the manifest
    should record after a run: counts per rule, teacher usage, problems with their reasons.
    """

    name: str

    def generate(self, chunks: list[dict]) -> Iterator[dict]: ...

    def report(self) -> dict: ...


def stable_id(*parts: str, prefix: str = "syn") -> str:
    """A short id that depends only on ``parts`` (chunk id, generator, question ...)."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]
    return f"{prefix}-{digest}"


def make_example(question: str, answer: str, chunk: dict, generator: str, *, kind: str = "synthetic",
                 task: str = "qa", parent_id: str | None = None, label: str | None = None,
                 example_id: str | None = None) -> dict[str, Any]:
    """One example in the dataset contract schema, with provenance (source, doc id, chunk id) from ``chunk``."""
    chunk_id = chunk.get("id") or ""
    return schema.make_example(question, answer, kind=kind, generator=generator, task=task,
                               source=chunk.get("source"), doc_id=chunk.get("doc_id"),
                               chunk_ids=[chunk_id] if chunk_id else [], parent_id=parent_id, label=label,
                               id=example_id or stable_id(chunk_id, generator, question))


def make_generators(data_cfg: DataConfig, *, cache_dir: Path | None = None) -> list[Generator]:
    """The generators named by ``data_cfg.generator`` ("rules", "llm" or "both", in that order).

    ``cache_dir`` holds the teacher's response cache (a rerun does not pay twice); without it the cache lives
    under ``~/.cache/verticalize/teacher``. Raises ``TeacherConfigError`` (a ConfigError) when ``llm`` is asked for
    but no endpoint/model is configured.
    """
    from verticalize.data.rules import RulesGenerator
    from verticalize.data.teacher import TeacherClient
    from verticalize.data.teacher_generator import LLMGenerator

    out: list[Generator] = []
    if data_cfg.generator in ("rules", "both"):
        out.append(RulesGenerator(max_per_chunk=data_cfg.max_per_chunk, cloze=data_cfg.cloze))
    if data_cfg.generator in ("llm", "both"):
        teacher = TeacherClient.from_config(data_cfg.teacher, cache_dir=cache_dir)
        out.append(LLMGenerator(teacher, max_per_chunk=data_cfg.max_per_chunk))
    return out
