"""Distillation generators: document chunks in, question/answer examples (contract schema) out.

Three generators share one interface: ``rules`` (offline, deterministic rule engine; see ``rules.py``), ``spans``
(offline, deterministic, answer-first: names, dates, numbers, definitions, each asked with a fitting wh-phrase; see
``spans.py``) and ``llm`` (any OpenAI-compatible teacher; see ``teacher_generator.py``). ``make_generators`` builds
the ones ``data.generator`` names: "offline" (the default) is rules + spans, "both" is rules + llm.
Every example a generator yields is built by ``schema.make_example(..., kind="synthetic", chunk=chunk)``: it has
its chunk id, doc id and source, and an id that is a stable hash of them and the pair, so reruns and reorderings
keep ids.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Iterator, Protocol, runtime_checkable

from verticalize.config import DataConfig


@runtime_checkable
class Generator(Protocol):
    """Turns chunks (rows of ``chunks.jsonl``) into examples in the dataset contract schema.

    ``generate`` yields lazily, in chunk order (wrap it in a progress bar); ``report`` returns what the manifest
    should record after a run: counts per rule, teacher usage, problems with their reasons.
    """

    name: str

    def generate(self, chunks: list[dict]) -> Iterator[dict]: ...

    def report(self) -> dict: ...


class ChunkPairGenerator:
    """The loop the offline generators share: ``pairs_for(chunk)`` (at most ``max_per_chunk`` pairs, each with a
    kind) becomes examples named ``"<name>:<kind>"``, counted per kind under ``"<count_prefix>:<kind>"``, and
    chunks that gave nothing are counted too."""

    name = ""
    count_prefix = "kind"

    def __init__(self, max_per_chunk: int = 4):
        self.max_per_chunk = max_per_chunk
        self.counts: Counter = Counter()

    def pairs_for(self, chunk: dict) -> list[Any]:
        raise NotImplementedError

    def pair_kind(self, pair: Any) -> str:
        return pair.kind

    def generate(self, chunks: list[dict]) -> Iterator[dict]:
        from verticalize.data.schema import make_example

        for chunk in chunks:
            self.counts["chunks"] += 1
            pairs = self.pairs_for(chunk) if self.max_per_chunk > 0 else []
            if not pairs:
                self.counts["chunks_without_pairs"] += 1
            for pair in pairs:
                kind = self.pair_kind(pair)
                self.counts[f"{self.count_prefix}:{kind}"] += 1
                yield make_example(pair.question, pair.answer, kind="synthetic", generator=f"{self.name}:{kind}",
                                   chunk=chunk)

    def report(self) -> dict:
        return {"counts": dict(sorted(self.counts.items()))}


def make_generators(data_cfg: DataConfig, *, cache_dir: Path | None = None) -> list[Generator]:
    """The generators named by ``data_cfg.generator``: "offline" = rules + spans, "rules", "spans", "llm",
    "both" = rules + llm (in that order).

    ``cache_dir`` holds the teacher's response cache (a rerun does not pay twice); without it the cache lives
    under ``~/.cache/verticalize/teacher``. Raises ``TeacherConfigError`` (a ConfigError) when ``llm`` is asked for
    but no endpoint/model is configured.
    """
    from verticalize.data.rules import RulesGenerator
    from verticalize.data.spans import SpanGenerator
    from verticalize.data.teacher import TeacherClient
    from verticalize.data.teacher_generator import LLMGenerator

    out: list[Generator] = []
    if data_cfg.generator in ("rules", "both", "offline"):
        out.append(RulesGenerator(max_per_chunk=data_cfg.max_per_chunk, cloze=data_cfg.cloze))
    if data_cfg.generator in ("spans", "offline"):
        out.append(SpanGenerator(max_per_chunk=data_cfg.max_per_chunk))
    if data_cfg.generator in ("llm", "both"):
        teacher = TeacherClient.from_config(data_cfg.teacher, cache_dir=cache_dir)
        out.append(LLMGenerator(teacher, max_per_chunk=data_cfg.max_per_chunk))
    return out
