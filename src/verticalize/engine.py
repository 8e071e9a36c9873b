"""Engines: what turns a prompt into tokens, shared by the evaluation ladder and the gateway (the HTTP layer only sees the `Engine` interface).

`EmbeddedEngine` runs Transformers + PEFT in-process with every adapter of a run loaded at once: one base model in
memory; requests that arrive together are generated together (batching.py), rows for different LoRA
adapters in one forward pass through PEFT's mixed-adapter batches, the base model as PEFT's `__base__` row.
The request and result types, the `Engine` interface and the streaming helpers live in engine_api.py (imported
by batching.py and the served engines too) and are re-exported here.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable

from verticalize.artifacts import RunDir, TrainedAdapter, read_adapter_meta, read_adapters
from verticalize.batching import BatchScheduler
from verticalize.engine_api import (Cancellation, Engine, EngineClosedError, GenerationRequest, GenerationResult,
                                    StopOnText, TokenClock, prompt_token_ids)
from verticalize.models import BaseForm, load_base_as_trained

_LOG = logging.getLogger("verticalize.engine")

# The one name of the bare base model where no served name is given: the ladder's engine, `export --adapter base`.
BASE_MODEL_ALIAS = "base"

__all__ = ["BASE_MODEL_ALIAS", "Cancellation", "EmbeddedEngine", "Engine", "EngineClosedError", "GenerationRequest",
           "GenerationResult", "SplitEngine", "StopOnText", "TokenClock", "choose_local_engine", "layered_stacks",
           "open_local_engine"]


def choose_local_engine(cfg: Any, adapters: list[TrainedAdapter]) -> tuple[str, str]:
    """("openvino" | "onnxruntime" | "openvino+onnxruntime" | "embedded", why) for serve.engine: the engine that
    answers in this process, for the gateway and for the ladder alike (under serve.engine llamacpp/vllm the ladder
    takes auto's choice).

    Why auto is OpenVINO alone and the split engine only on request: the two halves of the split quantise alike but
    compute differently (int8 activations in ONNX Runtime), so a greedy answer depended on the load — on the demo's
    30 test questions 3 to 18 answers per rung differed between them, and peft+rag's F1 was 0.494 from ONNX Runtime
    against 0.546 from OpenVINO, on either side of the demo's 0.5 gate (bench/results/engine_agreement.json).
    OpenVINO alone answers the same with 8 questions in flight as one at a time (30 of 30 for peft+rag), so what the
    ladder measures is what a request gets; the split's faster single stream is the price."""
    from verticalize.onnxruntime_engine import OnnxRuntimeUnavailable, why_not_onnxruntime
    from verticalize.openvino_engine import OpenVINOUnavailable, why_not_openvino

    wanted = cfg.serve.engine
    if wanted == "embedded":
        return "embedded", "serve.engine=embedded"
    lineages = [a for s in adapters for a in s.lineage]
    if wanted in ("onnxruntime", "split"):
        if reason := why_not_onnxruntime(cfg.model, lineages):
            raise OnnxRuntimeUnavailable(f"serve.engine={wanted} cannot serve this run: {reason}; set "
                                         "serve.engine=auto (or embedded)")
        if wanted == "onnxruntime":
            return "onnxruntime", "serve.engine=onnxruntime (one request at a time per model)"
    reason = why_not_openvino(cfg.model, lineages)
    if wanted in ("openvino", "split"):
        if reason:
            raise OpenVINOUnavailable(f"serve.engine={wanted} cannot serve this run: {reason}; set "
                                      "serve.engine=embedded (or auto)")
        if wanted == "split":
            return "openvino+onnxruntime", ("serve.engine=split: a request while nothing else generates by ONNX "
                                            "Runtime (fastest single stream), concurrent ones by OpenVINO GenAI "
                                            "(continuous batching); an answer may differ between the two")
        return "openvino", "serve.engine=openvino"
    if reason:
        return "embedded", f"auto: {reason}, so Transformers + PEFT in-process"
    return "openvino", ("auto: a Llama base with LoRA adapters, served as merged GGUFs by OpenVINO GenAI "
                        "(continuous batching)")


def open_local_engine(cfg: Any, adapters: list[TrainedAdapter], base_name: str, cache_dir: Path, *,
                      max_batch: int, batch_window_s: float = 0.01) -> tuple[Any, dict[str, str]]:
    """(engine, {"engine", "why"}): the base as ``base_name`` and each of ``adapters`` by its name, on the engine
    `choose_local_engine` picks (``cache_dir``: the run's engine cache). The embedded engine loads every lineage
    stage beside it (a layered stage is served with its parents switched on); the OpenVINO and ONNX Runtime
    engines serve each adapter as one merged model."""
    name, why = choose_local_engine(cfg, adapters)
    engines: dict[str, Any] = {}
    if "openvino" in name:
        from verticalize.openvino_engine import OpenVINOEngine
        engines["openvino"] = OpenVINOEngine.for_adapters(cfg.model, cfg.serve, adapters, base_name,
                                                          cache_dir / "openvino", max_num_seqs=max_batch,
                                                          log=_LOG.info)
    if "onnxruntime" in name:
        from verticalize.onnxruntime_engine import OnnxRuntimeEngine
        engines["onnxruntime"] = OnnxRuntimeEngine.for_adapters(cfg.model, cfg.serve, adapters, base_name,
                                                                cache_dir / "onnxruntime", log=_LOG.info)
    if len(engines) == 2:
        engine: Any = SplitEngine(single=engines["onnxruntime"], batch=engines["openvino"],
                                  quiet_s=cfg.serve.single_stream_quiet_ms / 1000)
    elif engines:
        engine = next(iter(engines.values()))
    else:
        stages = {a.name: a for s in adapters for a in s.lineage}
        model, tokenizer, form = load_base_as_trained(cfg.model, list(stages.values()))
        engine = EmbeddedEngine(model, tokenizer, base_name, {n: a.path for n, a in stages.items()},
                                max_batch=max_batch, batch_window_s=batch_window_s)
        engine.base_form = form
    return engine, {"engine": name, "why": why}


class SplitEngine:
    """serve.engine=split on a CPU: a request that arrives while nothing else is generating goes to ``single`` (ONNX
    Runtime, the fastest single stream) — unless requests overlapped less than ``quiet_s`` ago; the others go to
    ``batch`` (OpenVINO, continuous batching). Both serve the same merged models; the share each answered is
    counted (`answered_by`), and each result says which engine produced it (``GenerationResult.engine``).

    Why the quiet time: while a request runs on ONNX Runtime, requests that join it run on OpenVINO at the same
    time, and two engines' thread pools on the same cores slow each other down badly (measured: -30 % aggregate
    throughput at concurrency 4 when every request arriving at an idle engine went to ONNX Runtime). So once
    requests overlap — concurrent load — the next ones stay on the batch until there has been no overlap for
    ``quiet_s``; a client that sends its requests one after another never overlaps and keeps the single stream."""

    def __init__(self, single: Any, batch: Any, quiet_s: float = 0.5):
        self.single, self.batch = single, batch
        self.quiet_s = quiet_s
        self._last_overlap = float("-inf")  # when two or more requests last ran at once
        self.base_name = batch.base_name
        self.base_form = batch.base_form
        self.tokenizer = batch.tokenizer
        self._lock = threading.Lock()
        self._running = 0
        self.answered_by = {"onnxruntime": 0, "openvino": 0}

    def model_names(self) -> list[str]:
        return self.batch.model_names()

    def count_prompt_tokens(self, req: GenerationRequest) -> int:
        return self.batch.count_prompt_tokens(req)

    def close(self, timeout: float | None = None) -> None:
        self.single.close(timeout)
        self.batch.close(timeout)

    def generate(self, req: GenerationRequest, on_text: Callable[[str], None] | None = None,
                 cancel: Cancellation | None = None) -> GenerationResult:
        with self._lock:
            now = time.monotonic()
            alone = self._running == 0 and now - self._last_overlap >= self.quiet_s
            self._running += 1
            if self._running > 1:
                self._last_overlap = now
        name, engine = ("onnxruntime", self.single) if alone else ("openvino", self.batch)
        try:
            result = engine.generate(req, on_text, cancel)
        finally:
            with self._lock:
                if self._running > 1:
                    self._last_overlap = time.monotonic()
                self._running -= 1
        with self._lock:
            self.answered_by[name] += 1  # answered: a failed generation raised above
        result.engine = name
        return result


def layered_stacks(adapters: dict[str, Path]) -> dict[str, list[str]]:
    """Adapter name → the adapters to switch on together (root first), for layered LoRA-family stages.

    Such a stage was trained on the base with every earlier stage merged in ("merged-parents" in its
    verticalize_adapter.json), so it is only itself with its whole lineage active: additive LoRA deltas on the
    base equal the merged parents plus this stage. A lineage that is not all loaded raises: serving the stage
    alone would answer with another model than the one trained."""
    metas = {name: read_adapter_meta(path) or {} for name, path in adapters.items()}
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


class EmbeddedEngine:
    """Transformers + PEFT in-process; requests are batched by `BatchScheduler` (one worker owns the model)."""

    def __init__(self, model: Any, tokenizer: Any, base_name: str, adapters: dict[str, Path] | None = None,
                 max_batch: int = 8, batch_window_s: float = 0.01):
        self.model = model
        self.tokenizer = tokenizer
        self.base_name = base_name
        self.base_form: BaseForm | None = None  # how the base was loaded against how it was trained (from_run)
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
        trained = [a for a in read_adapters(run) if not a.is_full]
        model, tokenizer, form = load_base_as_trained(model_cfg, trained)
        engine = cls(model, tokenizer, base_name or Path(model_cfg.base).name, {a.name: a.path for a in trained},
                     **batching)
        engine.base_form = form
        return engine

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

    def close(self, timeout: float | None = None) -> None:
        """Let the requests already submitted finish, end the batching thread and let go of the model, so its
        memory is freed once no caller holds the engine (``serve/reload.py`` closes the old engine after a
        reload). A later ``generate`` raises `EngineClosedError`; closing twice is harmless."""
        self.scheduler.close(timeout)
        if self.model is None:
            return
        self.model = None
        import gc

        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _prompt_ids(self, req: GenerationRequest) -> list[int]:
        return prompt_token_ids(self.tokenizer, req)

    def count_prompt_tokens(self, req: GenerationRequest) -> int:
        return len(self._prompt_ids(req))

    def generate(self, req: GenerationRequest, on_text: Callable[[str], None] | None = None,
                 cancel: Cancellation | None = None) -> GenerationResult:
        """Generated in the next batch it fits; its row ends at end of sequence, a stop string, its max_tokens or
        ``cancel`` (see batching.py). After ``close()``: `EngineClosedError`."""
        if self.scheduler.closed:
            raise EngineClosedError("this engine is closed (its model was released, e.g. by /admin/reload); send "
                                    "the request to the engine that replaced it")
        return self.scheduler.submit(req, self._prompt_ids(req), on_text, cancel)

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
