"""Distillation generators: document chunks in, question/answer examples (contract schema) out.

Three generators share one interface: ``rules`` (offline, deterministic rule engine; see ``rules.py``), ``spans``
(offline, deterministic, answer-first: names, dates, numbers, definitions, each asked with a fitting wh-phrase; see
``spans.py``) and ``llm`` (any OpenAI-compatible teacher; see ``teacher_generator.py``). ``make_generators`` builds
the ones ``data.generator`` names: "offline" (the default) is rules + spans, "both" is rules + llm.
Every example a generator yields is built by ``schema.make_example(..., kind="synthetic", chunk=chunk)``: it has
its chunk id, doc id and source, and an id that is a stable hash of them and the pair, so reruns and reorderings
keep ids. The interface (``Generator``) and the offline generators' shared loop (``ChunkPairGenerator``) live in
``generator_base.py``; this module is only the factory.
"""

from __future__ import annotations

from pathlib import Path

from verticalize.config import DataConfig
from verticalize.data.generator_base import ChunkPairGenerator, Generator
from verticalize.data.rules import RulesGenerator
from verticalize.data.spans import SpanGenerator
from verticalize.openai_client import TeacherClient
from verticalize.data.teacher_generator import LLMGenerator


def make_generators(data_cfg: DataConfig, *, cache_dir: Path | None = None) -> list[Generator]:
    """The generators named by ``data_cfg.generator``: "offline" = rules + spans, "rules", "spans", "llm",
    "both" = rules + llm (in that order).

    ``cache_dir`` holds the teacher's response cache (a rerun does not pay twice); without it the cache lives
    under ``~/.cache/verticalize/teacher``. Raises ``TeacherConfigError`` (a ConfigError) when ``llm`` is asked for
    but no endpoint/model is configured.
    """
    out: list[Generator] = []
    if data_cfg.generator in ("rules", "both", "offline"):
        out.append(RulesGenerator(max_per_chunk=data_cfg.max_per_chunk, cloze=data_cfg.cloze))
    if data_cfg.generator in ("spans", "offline"):
        out.append(SpanGenerator(max_per_chunk=data_cfg.max_per_chunk))
    if data_cfg.generator in ("llm", "both"):
        teacher = TeacherClient.from_config(data_cfg.teacher, cache_dir=cache_dir)
        out.append(LLMGenerator(teacher, max_per_chunk=data_cfg.max_per_chunk))
    return out


__all__ = ["ChunkPairGenerator", "Generator", "make_generators"]
