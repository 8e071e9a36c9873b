"""The OpenVINO engine (serve.engine=openvino; what `auto` picks where it applies): OpenVINO GenAI's
continuous-batching pipeline on the CPU, over GGUF files that verticalize writes itself.

Why this engine: on a 2-core CPU it decodes several times faster than Transformers, batches concurrent requests
continuously (a request joins the running batch at the next step and leaves it when done) and installs from a
wheel (no compiler, unlike llama-cpp-python). bench/results/engine_candidates.json measured the candidates.

Adapters: OpenVINO GenAI applies PEFT LoRA at run time only to models exported through optimum-intel (which
pins an older Transformers than this project's); its GGUF reader ignores LoRA tensors (measured, every tensor
naming tried). So each served model is one GGUF: the base, or the base with one adapter and its layered parents
merged into the weights (`models.gguf_writer.merged_model`), written once per adapter version into a cache and
reused. Q8_0 keeps a merged LoRA delta (Q4 loses it: measured, 0 of 30 demo answers kept); OpenVINO reads Q8_0
and F16 GGUFs, not F32.

The prompt is rendered and tokenised by the model's Transformers tokenizer and handed over as token ids, so every
engine sees the same tokens for the same request; the generated ids are decoded by that tokenizer too. One
worker thread per served model owns its pipeline: it adds new requests, runs `step()`, hands each request its
new tokens, and cancels a request whose caller gave up or whose output reached a stop string (its KV-cache
blocks are freed at once).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Callable, Iterable

from verticalize.artifacts import TrainedAdapter
from verticalize.engine_api import (Cancellation, EngineClosedError, GenerationRequest, GenerationResult,
                                    TokenClock, WorkerRequest, eos_token_ids, prompt_token_ids,
                                    receive_tokens)
from verticalize.errors import UserError
from verticalize.models import BaseForm, resolve_base
from verticalize.models.gguf_writer import merged_model, source_gguf_of, write_gguf
from verticalize.models.merged_cache import merged_path, remove_stale, why_not_mergeable

WEIGHT_TYPES = ("q8_0", "f16")  # what OpenVINO GenAI's GGUF reader accepts among the types gguf_writer writes
_CACHE_VERSION = 1  # bump when what is written changes (the cache key holds it)


class OpenVINOUnavailable(UserError, RuntimeError):
    """OpenVINO GenAI is missing or cannot serve this run's models; the message says why and what to do."""


# ------------------------------------------------------------------------------------------- which engine
def why_not_openvino(model_cfg: Any, adapters: Iterable[TrainedAdapter]) -> str | None:
    """None when the OpenVINO engine can serve the base and every adapter in ``adapters`` as trained; else the
    reason, in words (``serve.engine=auto`` then falls back to the embedded engine and says so)."""
    try:
        import openvino_genai  # noqa: F401
    except ImportError:
        return "openvino-genai is not installed"
    import torch

    if torch.cuda.is_available():
        return "a CUDA GPU is available (Transformers on it is faster than a CPU engine)"
    return why_not_mergeable(model_cfg, adapters)


# ------------------------------------------------------------------------------------------- GGUF cache
def served_gguf(model_cfg: Any, adapter: TrainedAdapter | None, cache_dir: Path, weights: str = "q8_0",
                log: Callable[[str], None] | None = None) -> Path:
    """The GGUF that serves ``adapter`` (None: the bare base): written on first use under ``cache_dir``, named by
    a hash of what it is made from (base and adapter files, the lineage, the weight type), reused after."""
    if weights not in WEIGHT_TYPES:
        raise OpenVINOUnavailable(f"serve.openvino_weights={weights!r}: OpenVINO reads {', '.join(WEIGHT_TYPES)}")
    path = merged_path(model_cfg, adapter, cache_dir, weights, _CACHE_VERSION, ".gguf")
    if path.is_file():
        return path
    name = adapter.name if adapter is not None else "base"
    if log:
        log(f"writing {path.name} ({'base' if adapter is None else 'base + ' + name + ' merged'}, {weights})")
    model, _ = merged_model(model_cfg, adapter.path if adapter is not None else None)
    partial = path.with_suffix(".partial")
    base_dir = resolve_base(model_cfg)
    write_gguf(model, base_dir, partial, weights, source_gguf=source_gguf_of(base_dir), name=name)
    os.replace(partial, path)  # a crash mid-write never leaves a file that looks complete
    remove_stale(path)
    return path


# ------------------------------------------------------------------------------------------- the engine
class _Pipeline:
    """One served model: a ContinuousBatchingPipeline and the worker thread that owns it."""

    def __init__(self, path: Path, scheduler: Any, properties: dict[str, Any]):
        import openvino_genai as og

        self._og = og
        self.pipe = og.ContinuousBatchingPipeline(str(path), scheduler, "CPU", properties)
        self._pending: list[WorkerRequest] = []
        self._active: dict[int, WorkerRequest] = {}
        self._wake = threading.Condition()
        self._next_id = 0
        self.closed = False
        self._thread = threading.Thread(target=self._loop, name=f"openvino-{path.stem}", daemon=True)
        self._thread.start()

    def submit(self, live: WorkerRequest) -> None:
        with self._wake:
            if self.closed:
                raise EngineClosedError("this engine is closed; send the request to the engine that replaced it")
            self._pending.append(live)
            self._wake.notify()

    def stop(self, live: WorkerRequest) -> None:
        """End ``live`` at the next step (its caller gave up, or its text reached a stop string)."""
        with self._wake:
            live.stop_asked = True
            self._wake.notify()

    def close(self) -> None:
        """New requests are refused; the ones already submitted finish, then the worker ends."""
        with self._wake:
            self.closed = True
            self._wake.notify()
        self._thread.join()
        self.pipe = None

    def _loop(self) -> None:
        import numpy as np
        import openvino as ov

        while True:
            with self._wake:
                while not (self._pending or self._active or self.closed):
                    self._wake.wait()
                if self.closed and not (self._pending or self._active):
                    return
                new, self._pending = self._pending, []
            for live in new:  # add_request and step stay on this one thread
                self._next_id += 1
                try:
                    live.handle = self.pipe.add_request(
                        self._next_id, ov.Tensor(np.array([live.ids], dtype=np.int64)), live.config)
                except Exception as e:  # noqa: BLE001 - this request fails, the others go on
                    self._fail([live], e)
                    continue
                self._active[self._next_id] = live
            for live in self._active.values():
                if live.stop_asked and not live.stop_sent:
                    live.handle.stop()
                    live.stop_sent = True
            try:
                if self.pipe.has_non_finished_requests():
                    self.pipe.step()
                self._hand_out()
            except Exception as e:  # noqa: BLE001 - every request in the batch fails; the worker stays up
                self._fail(list(self._active.values()), e)
                self._active.clear()

    @staticmethod
    def _fail(lives: list[WorkerRequest], error: BaseException) -> None:
        for live in lives:
            live.error = error
            live.tokens.put(None)

    def _hand_out(self) -> None:
        running = self._og.GenerationStatus.RUNNING
        for rid, live in list(self._active.items()):
            if live.handle.can_read():
                for out in live.handle.read().values():
                    if out.generated_ids:
                        live.tokens.put(list(out.generated_ids))
                    if str(out.finish_reason).endswith("STOP"):
                        live.finish = "stop"
            if live.handle.get_status() != running and not live.handle.can_read():
                del self._active[rid]
                live.tokens.put(None)


class OpenVINOEngine:
    """Engine over OpenVINO GenAI: one continuous-batching pipeline per served model (base, each adapter)."""

    def __init__(self, models: dict[str, Path], tokenizer: Any, base_name: str, *, max_num_seqs: int = 8,
                 cache_gb: float = 0.5, threads: int = 0, precision: str = "", weights: str = "q8_0",
                 model_dir: Path | None = None):
        try:
            import openvino_genai as og
        except ImportError as e:
            raise OpenVINOUnavailable("serve.engine=openvino needs openvino-genai (a dependency of verticalize: "
                                      "reinstall it with the README's set-up)") from e
        self.tokenizer = tokenizer
        self.base_name = base_name
        self.weights = weights
        self.base_form: BaseForm | None = None
        properties: dict[str, Any] = {}
        if threads:
            properties["INFERENCE_NUM_THREADS"] = threads
        if precision:  # "f32" makes answers match Transformers in float32 (the tests use it); default: the CPU's
            properties["INFERENCE_PRECISION_HINT"] = precision
            properties["KV_CACHE_PRECISION"] = precision
        self._pipelines: dict[str, _Pipeline] = {}
        for name, path in models.items():
            scheduler = og.SchedulerConfig()
            scheduler.cache_size = max(1, int(round(cache_gb)))  # GB of KV cache per model
            scheduler.max_num_seqs = max_num_seqs
            scheduler.max_num_batched_tokens = 2048
            scheduler.dynamic_split_fuse = True  # a long prompt is prefilled in chunks between decode steps
            scheduler.enable_prefix_caching = True  # the system prompt and shared passages are prefilled once
            self._pipelines[name] = _Pipeline(path, scheduler, dict(properties))
        self._eos = eos_token_ids(tokenizer, model_dir)

    @classmethod
    def for_adapters(cls, model_cfg: Any, serve_cfg: Any, adapters: list[TrainedAdapter], base_name: str,
                     cache_dir: Path, *, max_num_seqs: int, log: Callable[[str], None] | None = None
                     ) -> "OpenVINOEngine":
        """The base (served as ``base_name``) and each of ``adapters`` (by its name), GGUFs written as needed."""
        from verticalize.models.loading import load_tokenizer

        reason = why_not_openvino(model_cfg, adapters)
        if reason:
            raise OpenVINOUnavailable(f"serve.engine=openvino cannot serve this run: {reason}; set "
                                      "serve.engine=embedded (or auto)")
        weights = serve_cfg.openvino_weights
        models = {base_name: served_gguf(model_cfg, None, cache_dir, weights, log)}
        for adapter in adapters:
            models[adapter.name] = served_gguf(model_cfg, adapter, cache_dir, weights, log)
        tokenizer = load_tokenizer(resolve_base(model_cfg), model_cfg)
        engine = cls(models, tokenizer, base_name, max_num_seqs=max_num_seqs, cache_gb=serve_cfg.openvino_cache_gb,
                     threads=serve_cfg.openvino_threads, precision=serve_cfg.openvino_precision, weights=weights,
                     model_dir=resolve_base(model_cfg))
        qlora = [a.name for a in adapters if a.method == "qlora"]
        note = (f"{', '.join(qlora)} trained QLoRA on a 4-bit NF4 base, but this machine cannot load one (no CUDA "
                f"GPU): the answers come from the adapter merged into the unquantised base, served as "
                f"{weights.upper()} GGUF, not from the model as trained" if qlora else "")
        engine.base_form = BaseForm("nf4" if qlora else "unquantised", f"{weights} gguf, adapters merged", note)
        return engine

    def model_names(self) -> list[str]:
        return [self.base_name, *[n for n in self._pipelines if n != self.base_name]]

    def close(self, timeout: float | None = None) -> None:
        """Let the running requests end, stop the workers and free the pipelines; closing twice is harmless."""
        for pipeline in self._pipelines.values():
            if not pipeline.closed:
                pipeline.close()

    def _prompt_ids(self, req: GenerationRequest) -> list[int]:
        return prompt_token_ids(self.tokenizer, req)

    def count_prompt_tokens(self, req: GenerationRequest) -> int:
        return len(self._prompt_ids(req))

    def _config(self, req: GenerationRequest) -> Any:
        import openvino_genai as og

        config = og.GenerationConfig()
        config.max_new_tokens = max(1, req.max_tokens)
        config.stop_token_ids = set(self._eos)
        config.eos_token_id = next(iter(sorted(self._eos)), -1) if self._eos else -1
        if req.temperature > 0:
            config.do_sample = True
            config.temperature = req.temperature
            config.top_p = req.top_p
            if req.seed is not None:
                config.rng_seed = req.seed
        else:
            config.do_sample = False
        return config

    def generate(self, req: GenerationRequest, on_text: Callable[[str], None] | None = None,
                 cancel: Cancellation | None = None) -> GenerationResult:
        """Streams pieces to ``on_text``; ends at end of sequence, a stop string, max_tokens or ``cancel`` (then
        the pipeline drops the request at its next step). Returns once the pipeline is done with it."""
        if req.model not in self._pipelines:
            raise KeyError(f"model '{req.model}' is not served by this OpenVINO engine")
        pipeline = self._pipelines[req.model]
        live = WorkerRequest(self._prompt_ids(req), self._config(req))
        clock = TokenClock()
        pipeline.submit(live)
        if cancel is not None:
            cancel.on_cancel(lambda: pipeline.stop(live))
        return receive_tokens(live, self.tokenizer, self._eos, req, on_text, cancel, lambda: pipeline.stop(live),
                              clock, "OpenVINO")
