"""Loading the models of the ladder once and generating answers in batches.

The base model and the trained adapter are loaded once into the serving engine the gateway would use; the
base-model rungs ask the engine's base model, the adapter rungs the adapter.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.progress import track

from verticalize.artifacts import TrainedAdapter
from verticalize.config import Config
from verticalize.engine import BASE_MODEL_ALIAS, EmbeddedEngine, open_local_engine
from verticalize.engine_api import GenerationRequest
from verticalize.models import resolve_base
from verticalize.models.loading import load_tokenizer
from verticalize.rungs import Rung

_CONSOLE = Console(stderr=True)


class LadderEngines:
    """The serving engine for the ladder: the base model with the trained adapter, on the engine the gateway
    would choose (``verticalize.engine.open_local_engine``), and the full fine-tune as a second engine, loaded
    lazily. A rung's answer is therefore generated exactly as ``verticalize serve`` would generate it."""

    def __init__(self, cfg: Config, adapter: TrainedAdapter | None, full: TrainedAdapter | None,
                 cache_dir: Path):
        self.cfg, self.adapter, self.full = cfg, adapter, full
        self.engine, self.choice = open_local_engine(cfg, [adapter] if adapter is not None else [],
                                                     BASE_MODEL_ALIAS, cache_dir, max_batch=cfg.eval.batch_size)
        # How the base was loaded against how it was trained (4-bit for QLoRA where this machine can).
        self.base_form = self.engine.base_form
        self._full_engine: Any = None

    def for_rung(self, rung: str | Rung) -> tuple[Any, str]:
        """(engine, model name) that answers ``rung``."""
        r = Rung.parse(rung)
        if r.uses_full_model:
            if self._full_engine is None:
                from transformers import AutoModelForCausalLM

                model = AutoModelForCausalLM.from_pretrained(
                    self.full.path, dtype="auto", trust_remote_code=self.cfg.model.trust_remote_code).eval()
                tokenizer = load_tokenizer(resolve_base(self.cfg.model), self.cfg.model)
                self._full_engine = EmbeddedEngine(model, tokenizer, self.full.name,
                                                   max_batch=self.cfg.eval.batch_size)
            return self._full_engine, self.full.name
        if r.uses_adapter:
            if self.adapter is None:
                raise RuntimeError("no trained adapter")
            return self.engine, self.adapter.name
        return self.engine, BASE_MODEL_ALIAS

    def close(self) -> None:
        """End the engines' batch workers (the answers already asked for are finished first)."""
        self.engine.close()
        if self._full_engine is not None:
            self._full_engine.close()

    def count_tokens(self, conversation: list[dict[str, str]]) -> int:
        return self.engine.count_prompt_tokens(GenerationRequest(model=BASE_MODEL_ALIAS, messages=conversation))


@dataclass
class Generated:
    text: str
    new_tokens: int
    latency_s: float
    batch: int
    engine: str | None = None  # which engine answered, where the engine routes (the split engine)


def generate_answers(engine: Any, model_name: str, conversations: Sequence[list[dict[str, str]]], *,
                     max_new_tokens: int, batch_size: int, label: str = "generating") -> list[Generated]:
    """Greedy answers in the input order, through the engine's ``generate`` — the call the gateway makes per
    request. Questions of similar prompt length are sent together (``batch_size`` at a time) so the engine batches
    them with little padding; each answer's latency is what its caller waited."""
    from concurrent.futures import ThreadPoolExecutor

    # Characters stand in for tokens here: the engine tokenises each prompt once, when it generates.
    lengths = [sum(len(m["content"]) for m in c) for c in conversations]
    order = sorted(range(len(conversations)), key=lambda i: lengths[i])
    results: list[Generated | None] = [None] * len(conversations)

    def one(i: int, batch: int) -> None:
        t0 = time.perf_counter()
        out = engine.generate(GenerationRequest(model=model_name, messages=conversations[i],
                                                max_tokens=max_new_tokens, temperature=0.0))
        results[i] = Generated(out.text.strip(), out.completion_tokens, time.perf_counter() - t0, batch,
                               out.engine)

    with ThreadPoolExecutor(max_workers=batch_size) as pool:
        for start in track(range(0, len(order), batch_size), description=f"{label} ({len(order)} answers)",
                           console=_CONSOLE, disable=not order):
            list(pool.map(lambda i: one(i, start), order[start:start + batch_size]))
    return [r for r in results if r is not None]
