"""What a distillation generator is: the ``Generator`` interface and ``ChunkPairGenerator``, the loop the
offline generators (``rules.RulesGenerator``, ``spans.SpanGenerator``) share.

The generator modules import this module; ``generators.py`` (the factory) imports them: a one-way dependency.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterator, Protocol, runtime_checkable

from verticalize.data.schema import make_example


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
