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
worker process per served model owns its pipeline (`openvino_worker`, which says why a process): it adds new
requests, runs `step()`, sends each request its new tokens, and cancels a request whose caller gave up or whose
output reached a stop string (its KV-cache blocks are freed at once).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable

from verticalize.artifacts import TrainedAdapter
from verticalize.engine_api import (Cancellation, GenerationRequest, GenerationResult, TokenClock,
                                    WorkerRequest, eos_token_ids, prompt_token_ids, receive_tokens)
from verticalize.engine_process import start_processes
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
class OpenVINOEngine:
    """Engine over OpenVINO GenAI: one continuous-batching pipeline per served model (base, each adapter)."""

    def __init__(self, models: dict[str, Path], tokenizer: Any, base_name: str, *, max_num_seqs: int = 8,
                 cache_gb: float = 0.5, threads: int = 0, precision: str = "", weights: str = "q8_0",
                 model_dir: Path | None = None):
        try:
            import openvino_genai  # noqa: F401 - loaded by the worker processes; checked here for a clear error
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
        scheduler = {
            "cache_size": max(1, int(round(cache_gb))),  # GB of KV cache per model
            "max_num_seqs": max_num_seqs,
            "max_num_batched_tokens": 2048,
            "dynamic_split_fuse": True,  # a long prompt is prefilled in chunks between decode steps
            "enable_prefix_caching": True,  # the system prompt and shared passages are prefilled once
        }
        self._pipelines = start_processes(
            "verticalize.openvino_worker", "OpenVINO",
            {name: (str(path), scheduler, properties) for name, path in models.items()},
            lambda name, why: OpenVINOUnavailable(f"OpenVINO GenAI could not load {models[name].name}: {why}"))
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
            pipeline.close()

    def _prompt_ids(self, req: GenerationRequest) -> list[int]:
        return prompt_token_ids(self.tokenizer, req)

    def count_prompt_tokens(self, req: GenerationRequest) -> int:
        return len(self._prompt_ids(req))

    def _config(self, req: GenerationRequest) -> dict[str, Any]:
        """The request's og.GenerationConfig fields (the worker process builds the config from them)."""
        config: dict[str, Any] = {
            "max_new_tokens": max(1, req.max_tokens), "stop_token_ids": set(self._eos),
            "eos_token_id": next(iter(sorted(self._eos)), -1) if self._eos else -1,
            "do_sample": req.temperature > 0}
        if req.temperature > 0:
            config.update(temperature=req.temperature, top_p=req.top_p)
            if req.seed is not None:
                config["rng_seed"] = req.seed
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
