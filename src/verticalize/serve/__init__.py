"""Serving: an OpenAI-compatible gateway over an engine, with retrieval, limits, metrics and feedback.

Public API:
    build_gateway(cfg, run) -> Gateway     engine + knowledge base + feedback store for a run directory
    build_engine(cfg, run) -> Engine       by serve.engine: embedded (in-process), llamacpp (exported GGUFs),
                                           vllm (forwards to a vLLM server's OpenAI API)
    create_app(gateway) -> FastAPI
    serve_run(cfg, run)                    run the gateway with uvicorn until interrupted
    export_feedback(run, out=None) -> dict feedback → seed examples for the next `verticalize run --iterate`
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from verticalize.answering import PromptStyle
from verticalize.artifacts import RunDir
from verticalize.config import Config
from verticalize.engine import EmbeddedEngine
from verticalize.export.gguf import source_gguf_of
from verticalize.kb import open_kb
from verticalize.models import resolve_base
from verticalize.pii import redact
from verticalize.serve.app import Gateway, GatewaySettings, create_app, load_training_questions
from verticalize.serve.feedback import FeedbackStore, export_seed_examples
from verticalize.serve.llamacpp import LlamaCppEngine
from verticalize.serve.quality import QualitySignals
from verticalize.serve.vllm import VLLMEngine

__all__ = ["Gateway", "GatewaySettings", "build_gateway", "create_app", "serve_run", "export_feedback",
           "feedback_db_path"]


def feedback_db_path(run: RunDir) -> Path:
    return run.feedback_db


def _redactor() -> Any:
    return lambda text: redact(text)[0]  # the same rules as the documents


def build_gateway(cfg: Config, run: RunDir, engine: Any = None) -> Gateway:
    if engine is None:
        engine = build_engine(cfg, run)
    kb = None
    if run.manifest("kb").is_file():
        kb = open_kb(run.kb_dir)
    style = PromptStyle.from_config(cfg)
    settings = GatewaySettings.from_config(cfg.serve, top_k=cfg.kb.top_k, style=style)
    quality = QualitySignals(load_training_questions(run.dataset_split("train")), style=style)
    return Gateway(engine, settings, kb=kb, feedback=FeedbackStore(feedback_db_path(run), _redactor()),
                   quality=quality)


def build_engine(cfg: Config, run: RunDir) -> Any:
    """The engine named by serve.engine: embedded (in-process), llamacpp (exported GGUFs) or vllm (a server)."""
    if cfg.serve.engine == "llamacpp":
        gguf_dir = Path(cfg.serve.gguf_dir) if cfg.serve.gguf_dir else run.export_dir("gguf")
        return LlamaCppEngine.from_run(cfg.serve, gguf_dir, _base_name(cfg), source_gguf_of(resolve_base(cfg.model)))
    if cfg.serve.engine == "vllm":
        return VLLMEngine.from_config(cfg, _base_name(cfg))
    return EmbeddedEngine.from_run(cfg.model, run, base_name=_base_name(cfg),
                                   max_batch=cfg.serve.max_batch_size,
                                   batch_window_s=cfg.serve.batch_window_ms / 1000)


def _base_name(cfg: Config) -> str:
    return Path(cfg.model.base).name.replace("/", "--")


def serve_run(cfg: Config, run: RunDir) -> None:
    import uvicorn

    if cfg.serve.torch_threads:
        import torch

        torch.set_num_threads(cfg.serve.torch_threads)
    app = create_app(build_gateway(cfg, run))
    # In-flight requests finish on SIGTERM/SIGINT: uvicorn stops accepting, then waits up to this long.
    uvicorn.run(app, host=cfg.serve.host, port=cfg.serve.port, log_level="info",
                timeout_graceful_shutdown=int(cfg.serve.request_timeout_s))


def export_feedback(run: RunDir, out: Path | None = None, min_rating: int = 1) -> dict[str, int]:
    db = feedback_db_path(run)
    if not db.is_file():
        raise FileNotFoundError(f"no feedback store at {db}: serve the run and POST /v1/feedback first")
    target = out or run.feedback_seed
    counts = export_seed_examples(FeedbackStore(db), target, min_rating=min_rating)
    counts["path"] = str(target)  # type: ignore[assignment]
    return counts


__all__ += ["build_engine"]
