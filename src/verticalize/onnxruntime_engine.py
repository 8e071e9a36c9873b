"""The ONNX Runtime engine (serve.engine=onnxruntime; the single-stream half of serve.engine=split):
onnxruntime-genai's generator on the CPU, over ONNX models that verticalize converts itself.

Why this engine: on 2 cores its int8 kernels (MatMulNBits with int8 activations, block 32) decode one stream as
fast as llama.cpp on the same model's Q8_0 GGUF — ~1.8x the OpenVINO pipeline (bench/results/onnxruntime_probe.json)
— and it installs from wheels. But on a CPU it has no continuous batching (its request engine batches
statically, and a request waits for the running batch to end: measured), so on its own it answers one request at
a time per model. `engine.SplitEngine` therefore sends a request here only when nothing else is running for its
model, and to OpenVINO's continuous batching otherwise: a lone request gets the fast single stream, concurrent
ones the batch.

Models: like the OpenVINO engine's GGUFs, each served model is the base, or the base with one adapter and its
layered parents merged (`models.gguf_writer.merged_model`), converted once by onnxruntime-genai's model builder
into the run's engine cache (`models.merged_cache`) and reused. onnxruntime-genai has LoRA adapters at run time,
but only per generator and only for models exported with LoRA inputs (measured: 0.67x the merged speed), so a
copy per adapter it is, as with OpenVINO.

The prompt is rendered and tokenised by the model's Transformers tokenizer and handed over as token ids, so every
engine sees the same tokens; one worker process per served model (`onnxruntime_worker`; `engine_process` says why
a process) runs its requests in turn.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

from verticalize.artifacts import TrainedAdapter
from verticalize.engine_api import (Cancellation, GenerationRequest, GenerationResult, TokenClock,
                                    WorkerRequest, eos_token_ids, prompt_token_ids, receive_tokens)
from verticalize.engine_process import start_processes
from verticalize.errors import UserError
from verticalize.models import BaseForm, resolve_base
from verticalize.models.gguf_writer import merged_model
from verticalize.models.merged_cache import merged_path, remove_stale, why_not_mergeable

PRECISIONS = ("int8", "fp32")  # int8: the speed; fp32: Transformers' greedy tokens exactly (the tests use it)
_CACHE_VERSION = 1  # bump when what is written changes (the cache key holds it)


class OnnxRuntimeUnavailable(UserError, RuntimeError):
    """onnxruntime-genai is missing or cannot serve this run's models; the message says why and what to do."""


def why_not_onnxruntime(model_cfg: Any, adapters: Iterable[TrainedAdapter]) -> str | None:
    """None when this engine can serve the base and every adapter in ``adapters``; else the reason, in words."""
    try:
        import onnxruntime_genai  # noqa: F401
    except ImportError:
        return "onnxruntime-genai is not installed"
    return why_not_mergeable(model_cfg, adapters)


# ------------------------------------------------------------------------------------------- model cache
def served_onnx(model_cfg: Any, adapter: TrainedAdapter | None, cache_dir: Path, precision: str = "int8",
                log: Callable[[str], None] | None = None) -> Path:
    """The ONNX model directory that serves ``adapter`` (None: the bare base): converted on first use under
    ``cache_dir`` by onnxruntime-genai's model builder, named by a hash of what it is made from, reused after."""
    if precision not in PRECISIONS:
        raise OnnxRuntimeUnavailable(f"serve.onnxruntime_precision={precision!r}: one of {', '.join(PRECISIONS)}")
    path = merged_path(model_cfg, adapter, cache_dir, precision, _CACHE_VERSION)
    if (path / "genai_config.json").is_file():
        return path
    name = adapter.name if adapter is not None else "base"
    if log:
        log(f"converting {path.name} ({'base' if adapter is None else 'base + ' + name + ' merged'}, {precision})")
    base_dir = resolve_base(model_cfg)
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="verticalize-onnx-") as tmp:
        merged = Path(tmp) / "merged"
        model, tokenizer = merged_model(model_cfg, adapter.path if adapter is not None else None)
        model.save_pretrained(merged)
        tokenizer.save_pretrained(merged)
        if (base_dir / "generation_config.json").is_file() and not (merged / "generation_config.json").is_file():
            shutil.copy(base_dir / "generation_config.json", merged / "generation_config.json")
        del model
        output = io.StringIO()  # the builder prints its progress: kept for the error message, not the log
        try:
            from onnxruntime_genai.models import builder

            with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output), _quiet_quantizer():
                options = builder.parse_extra_options(None, str(merged), str(partial), precision, "cpu",
                                                      str(Path(tmp) / "cache"), None)
                builder.create_model(None, str(merged), str(partial), precision, "cpu", str(Path(tmp) / "cache"),
                                     **options)
            error = None
        except Exception as e:  # noqa: BLE001 - reported with the builder's own last lines
            error = e
    if error is not None or not (partial / "genai_config.json").is_file():
        shutil.rmtree(partial, ignore_errors=True)
        tail = [line for line in output.getvalue().strip().splitlines() if line.strip()][-2:]
        raise OnnxRuntimeUnavailable(f"onnxruntime-genai's model builder could not convert {name}: "
                                     f"{error or 'no genai_config.json written'}"
                                     f"{' (' + ' / '.join(tail)[-300:] + ')' if tail else ''}; set "
                                     "serve.engine=openvino or embedded") from error
    shutil.rmtree(path, ignore_errors=True)  # an incomplete one (no genai_config.json)
    os.replace(partial, path)  # a crash mid-conversion never leaves a directory that looks complete
    remove_stale(path)
    return path


@contextlib.contextmanager
def _quiet_quantizer() -> Any:
    """ONNX Runtime's int8 quantizer logs one INFO line per weight matrix (hundreds per model): warnings only."""
    loggers = [logging.getLogger(n) for n in ("onnxruntime.quantization",
                                               "onnxruntime.quantization.matmul_nbits_quantizer")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


# ------------------------------------------------------------------------------------------- the engine
class OnnxRuntimeEngine:
    """Engine over onnxruntime-genai: one model per served name (base, each adapter), requests one at a time."""

    def __init__(self, models: dict[str, Path], tokenizer: Any, base_name: str, *, threads: int = 0,
                 model_dir: Path | None = None):
        try:
            import onnxruntime_genai  # noqa: F401
        except ImportError as e:
            raise OnnxRuntimeUnavailable("serve.engine=onnxruntime needs onnxruntime-genai (a dependency of "
                                         "verticalize: reinstall it with the README's set-up)") from e
        self.tokenizer = tokenizer
        self.base_name = base_name
        self.base_form: BaseForm | None = None
        self._eos = eos_token_ids(tokenizer, model_dir)
        self._workers = start_processes(
            "verticalize.onnxruntime_worker", "ONNX Runtime",
            {name: (str(path), threads, set(self._eos)) for name, path in models.items()},
            lambda name, why: OnnxRuntimeUnavailable(f"onnxruntime-genai could not load {models[name]}: {why}"))

    @classmethod
    def for_adapters(cls, model_cfg: Any, serve_cfg: Any, adapters: list[TrainedAdapter], base_name: str,
                     cache_dir: Path, *, log: Callable[[str], None] | None = None) -> "OnnxRuntimeEngine":
        """The base (served as ``base_name``) and each of ``adapters`` (by its name), converted as needed."""
        from verticalize.models.loading import load_tokenizer

        reason = why_not_onnxruntime(model_cfg, adapters)
        if reason:
            raise OnnxRuntimeUnavailable(f"serve.engine=onnxruntime cannot serve this run: {reason}; set "
                                         "serve.engine=embedded (or auto)")
        precision = serve_cfg.onnxruntime_precision
        models = {base_name: served_onnx(model_cfg, None, cache_dir, precision, log)}
        for adapter in adapters:
            models[adapter.name] = served_onnx(model_cfg, adapter, cache_dir, precision, log)
        base_dir = resolve_base(model_cfg)
        engine = cls(models, load_tokenizer(base_dir, model_cfg), base_name, threads=serve_cfg.onnxruntime_threads,
                     model_dir=base_dir)
        engine.base_form = BaseForm("unquantised", f"{precision} onnx, adapters merged", "")
        return engine

    def model_names(self) -> list[str]:
        return [self.base_name, *[n for n in self._workers if n != self.base_name]]

    def busy(self, model: str) -> int:
        """Requests submitted for ``model`` and not finished."""
        return self._workers[model].busy

    def close(self, timeout: float | None = None) -> None:
        """Let the submitted requests end, stop the workers and free the models; closing twice is harmless."""
        for worker in self._workers.values():
            worker.close()

    def count_prompt_tokens(self, req: GenerationRequest) -> int:
        return len(prompt_token_ids(self.tokenizer, req))

    def generate(self, req: GenerationRequest, on_text: Callable[[str], None] | None = None,
                 cancel: Cancellation | None = None) -> GenerationResult:
        """Streams pieces to ``on_text``; ends at end of sequence, a stop string, max_tokens or ``cancel`` (the
        worker checks before every token). Returns once the worker is done with the request."""
        if req.model not in self._workers:
            raise KeyError(f"model '{req.model}' is not served by this ONNX Runtime engine")
        worker = self._workers[req.model]
        live = WorkerRequest(prompt_token_ids(self.tokenizer, req),
                             {"max_tokens": max(1, req.max_tokens), "temperature": req.temperature,
                              "top_p": req.top_p, "seed": req.seed})
        clock = TokenClock()
        worker.submit(live)
        if cancel is not None:
            cancel.on_cancel(lambda: worker.stop(live))
        return receive_tokens(live, self.tokenizer, self._eos, req, on_text, cancel, lambda: worker.stop(live),
                              clock, "ONNX Runtime")
