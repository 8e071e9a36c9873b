"""Engines: what turns a prompt into tokens, shared by the evaluation ladder and the gateway (the HTTP layer only sees the `Engine` interface).

`EmbeddedEngine` runs Transformers + PEFT in-process with every adapter of a run loaded at once: one base model in
memory; requests that arrive together are generated together (batching.py), rows for different LoRA
adapters in one forward pass through PEFT's mixed-adapter batches, the base model as PEFT's `__base__` row.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from verticalize.artifacts import ADAPTER_META, RunDir, read_adapters

BASE_MODEL_ALIAS = "base"


@dataclass
class GenerationRequest:
    model: str                       # an adapter name, or the base model's served name
    messages: list[dict[str, str]] | None = None   # chat form (rendered with the chat template)
    prompt: str | None = None        # raw completion form
    max_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] | None = None
    seed: int | None = None


@dataclass
class GenerationResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str               # "stop" | "length"
    time_to_first_token: float | None = None
    inter_token_latencies: list[float] = field(default_factory=list)


class Engine(Protocol):
    base_name: str

    def model_names(self) -> list[str]: ...

    def count_prompt_tokens(self, req: GenerationRequest) -> int: ...

    def generate(self, req: GenerationRequest, on_text: Callable[[str], None] | None = None) -> GenerationResult:
        """Generate; ``on_text`` receives text pieces as they are decoded (streaming)."""
        ...


def adapter_info(adapter_dir: Path) -> dict[str, Any]:
    info = adapter_dir / ADAPTER_META
    return json.loads(info.read_text(encoding="utf-8")) if info.is_file() else {}


def layered_stacks(adapters: dict[str, Path]) -> dict[str, list[str]]:
    """Adapter name → the adapters to switch on together (root first), for layered LoRA-family stages.

    Such a stage was trained on the base with every earlier stage merged in ("merged-parents" in its
    verticalize_adapter.json), so it is only itself with its whole lineage active: additive LoRA deltas on the
    base equal the merged parents plus this stage. A lineage that is not all loaded raises: serving the stage
    alone would answer with another model than the one trained."""
    metas = {name: adapter_info(path) for name, path in adapters.items()}
    stacks: dict[str, list[str]] = {}
    for name, meta in metas.items():
        if meta.get("layering") != "merged-parents" or not meta.get("parent"):
            continue
        chain, node = [name], meta.get("parent")
        while node:
            if node not in metas:
                raise ValueError(f"adapter '{name}' is a layered stage on '{node}', which is not loaded; load "
                                 "its whole lineage (every stage under RUN/train/adapters/)")
            if node in chain:
                raise ValueError(f"adapter '{name}': its lineage loops at '{node}'")
            chain.insert(0, node)
            node = metas[node].get("parent")
        stacks[name] = chain
    return stacks


class TokenClock:
    """Time to first token and the gaps between tokens, as every engine reports them."""

    def __init__(self, started: float | None = None):
        self.started = started if started is not None else time.perf_counter()
        self.first: float | None = None  # seconds from start to the first token
        self.gaps: list[float] = []
        self._last = self.started

    def tick(self) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now - self.started
        else:
            self.gaps.append(now - self._last)
        self._last = now


class _StopOnText:
    """Cuts the output at the first stop string; emits only text that can no longer become a stop string."""

    def __init__(self, stops: list[str], sink: Callable[[str], None] | None):
        self.stops = stops
        self.sink = sink
        self.text = ""
        self.emitted = 0
        self.stopped = False

    def feed(self, piece: str) -> None:
        if self.stopped:
            return
        self.text += piece
        for s in self.stops:
            idx = self.text.find(s)
            if idx >= 0:
                self.text = self.text[:idx]
                self.stopped = True
        hold = 0 if self.stopped else max((len(s) - 1 for s in self.stops), default=0)
        ready = len(self.text) - hold
        if self.sink and ready > self.emitted:
            self.sink(self.text[self.emitted:ready])
            self.emitted = ready

    def finish(self) -> None:
        if self.sink and len(self.text) > self.emitted:
            self.sink(self.text[self.emitted:])
            self.emitted = len(self.text)


class EmbeddedEngine:
    """Transformers + PEFT in-process; requests are batched by `BatchScheduler` (one worker owns the model)."""

    def __init__(self, model: Any, tokenizer: Any, base_name: str, adapters: dict[str, Path] | None = None,
                 max_batch: int = 8, batch_window_s: float = 0.01):
        from verticalize.batching import BatchScheduler

        self.model = model
        self.tokenizer = tokenizer
        self.base_name = base_name
        self.adapters: list[str] = []
        for name, path in (adapters or {}).items():
            self._load_adapter(name, path)
        self.stacks = layered_stacks(adapters or {})
        self.model.eval()
        self.mixed_batches = bool(self.adapters) and all(self._is_plain_lora(n) for n in self.adapters)
        self.scheduler = BatchScheduler(self, max_batch=max_batch, window_s=batch_window_s)

    @classmethod
    def from_run(cls, model_cfg: Any, run: RunDir, base_name: str | None = None,
                 **batching: Any) -> "EmbeddedEngine":
        """The base with every PEFT adapter of the run loaded, each served by its stage name (a full fine-tune
        is a model of its own and is not loaded here)."""
        from verticalize.models import load_base

        adapters = {a.name: a.path for a in read_adapters(run) if not a.is_full}
        model, tokenizer = load_base(model_cfg)
        return cls(model, tokenizer, base_name or Path(model_cfg.base).name, adapters, **batching)

    def _load_adapter(self, name: str, path: Path) -> None:
        from peft import PeftModel

        if not self.adapters:
            self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=name)
        else:
            self.model.load_adapter(str(path), adapter_name=name)
        self.adapters.append(name)

    def _is_plain_lora(self, name: str) -> bool:
        config = self.model.peft_config[name]
        return str(getattr(config, "peft_type", "")).endswith("LORA") and not getattr(config, "use_dora", False)

    def model_names(self) -> list[str]:
        return [self.base_name, *self.adapters]

    def _prompt_ids(self, req: GenerationRequest) -> list[int]:
        if req.messages is not None:
            ids = self.tokenizer.apply_chat_template(req.messages, add_generation_prompt=True, tokenize=True,
                                                     return_dict=False)
            return list(ids)
        return self.tokenizer(req.prompt or "", add_special_tokens=True)["input_ids"]

    def count_prompt_tokens(self, req: GenerationRequest) -> int:
        return len(self._prompt_ids(req))

    def generate(self, req: GenerationRequest, on_text: Callable[[str], None] | None = None) -> GenerationResult:
        return self.scheduler.submit(req, self._prompt_ids(req), on_text)

    # ------------------------------------------------------------------------------------------ for the scheduler
    def eos_ids(self) -> set[int]:
        ids = self.model.generation_config.eos_token_id
        found = set(ids if isinstance(ids, list) else [ids]) if ids is not None else set()
        if self.tokenizer.eos_token_id is not None:
            found.add(self.tokenizer.eos_token_id)
        return found

    def can_share_batch(self, a: str, b: str) -> bool:
        """Rows for different adapters share a forward pass only through PEFT's mixed LoRA batches (one adapter
        per row, so a layered stack runs on its own)."""
        return a == b or (self.mixed_batches and a not in self.stacks and b not in self.stacks)

    def generate_rows(self, models: list[str], kwargs: dict[str, Any]) -> Any:
        if len(set(models)) > 1:
            names = [m if m in self.adapters else "__base__" for m in models]
            return self.model.generate(**kwargs, adapter_names=names)
        name = models[0]
        if name in self.stacks:  # a layered stage: its parents were merged into the base it was trained on
            self.model.base_model.set_adapter(self.stacks[name])
            return self.model.generate(**kwargs)
        if name in self.adapters:
            self.model.set_adapter(name)
            return self.model.generate(**kwargs)
        if self.adapters:  # the base model through the PEFT wrapper
            with self.model.disable_adapter():
                return self.model.generate(**kwargs)
        return self.model.generate(**kwargs)
