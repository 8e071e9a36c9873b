"""Serving: an OpenAI-compatible gateway over an engine, with retrieval, limits, metrics and feedback.

Public API:
    build_gateway(cfg, run) -> Gateway     engine + knowledge base + feedback store for a run directory
    build_engine(cfg, run) -> Engine       by serve.engine: auto/openvino/embedded (in-process), llamacpp
                                           (exported GGUFs), vllm (forwards to a vLLM server's OpenAI API)
    create_app(gateway) -> FastAPI
    serve_run(cfg, run, insecure=False)    run the gateway with uvicorn until interrupted (a non-loopback bind
                                           needs an API key, or insecure=True)
    export_feedback(run, out=None) -> dict APPROVED feedback → seed examples (what `run --iterate` also uses)
    enable_reload(gateway, run)            POST /admin/reload: switch to another version of the run (serve/reload.py)
"""

from __future__ import annotations

import ipaddress
import logging
import os
from pathlib import Path
from typing import Any

from verticalize.answering import PromptStyle
from verticalize.artifacts import RunDir, read_adapters, write_jsonl
from verticalize.config import Config, load_config
from verticalize.engine import open_local_engine
from verticalize.errors import UserError
from verticalize.export.gguf import source_gguf_of
from verticalize.kb import open_kb
from verticalize.models import resolve_base
from verticalize.pii import redact
from verticalize.testsets import read_test_file
from verticalize.serve.app import Gateway, GatewaySettings, create_app, load_training_questions
from verticalize.serve.feedback import FeedbackStore, export_seed_examples, preference_pairs, rated_answers
from verticalize.serve.llamacpp import LlamaCppEngine
from verticalize.serve.quality import QualitySignals
from verticalize.serve.reload import Reloader, Served, SwitchableEngine
from verticalize.serve.vllm import VLLMEngine

__all__ = ["Gateway", "GatewaySettings", "build_gateway", "create_app", "serve_run", "export_feedback",
           "export_preferences", "export_ratings", "feedback_db_path"]


def feedback_db_path(run: RunDir) -> Path:
    return run.feedback_db


def _redactor() -> Any:
    return lambda text: redact(text)[0]  # the same rules as the documents


def load_served(cfg: Config, run: RunDir, engine: Any = None) -> Served:
    """What a run version serves: its engine and adapters, knowledge base, feedback store, quality signals and
    prompt settings (what `build_gateway` starts with and a reload switches to)."""
    if engine is None:
        engine = build_engine(cfg, run)
    kb = open_kb(run.kb_dir) if run.manifest("kb").is_file() else None
    style = PromptStyle.from_config(cfg)
    quality = QualitySignals(load_training_questions(run.dataset_split("train")), style=style)
    return Served(run, engine, kb=kb, feedback=FeedbackStore(feedback_db_path(run), _redactor()), quality=quality,
                  style=style, rag_adapters=set(cfg.serve.rag_adapters), top_k=cfg.kb.top_k)


def load_run_config(run: RunDir, overrides: list[str] | None = None) -> Config:
    """A run's own resolved config (RUN/config.yaml) with the server's overrides: what a reload loads it with."""
    path = run.config_file if run.config_file.is_file() else None
    return load_config(path, [f"project.run_dir={run.root.resolve()}", *(overrides or [])])


def build_gateway(cfg: Config, run: RunDir, engine: Any = None) -> Gateway:
    served = load_served(cfg, run, engine)
    settings = GatewaySettings.from_config(cfg.serve, top_k=cfg.kb.top_k, style=served.style)
    settings.review_keys = {k.strip() for k in os.environ.get(cfg.serve.review_key_env, "").split(",") if k.strip()}
    # The routes call a SwitchableEngine, so that a reload can replace the engine under them.
    return Gateway(SwitchableEngine(served.engine), settings, kb=served.kb, feedback=served.feedback,
                   quality=served.quality)


def enable_reload(gateway: Gateway, run: RunDir, overrides: list[str] | None = None) -> Reloader:
    """Let ``gateway`` switch to another version of ``run``'s family (POST /admin/reload)."""
    drain = 2 * gateway.settings.request_timeout_s
    gateway.reloader = Reloader(run, lambda r: load_served(load_run_config(r, overrides), r), drain_timeout_s=drain)
    return gateway.reloader


def build_engine(cfg: Config, run: RunDir) -> Any:
    """The engine named by serve.engine: openvino or embedded in-process (auto: the first that can serve the run,
    as the ladder chooses), llamacpp (exported GGUFs) or vllm (a server)."""
    if cfg.serve.engine == "llamacpp":
        gguf_dir = Path(cfg.serve.gguf_dir) if cfg.serve.gguf_dir else run.export_dir("gguf")
        return LlamaCppEngine.from_run(cfg.serve, gguf_dir, _base_name(cfg), source_gguf_of(resolve_base(cfg.model)))
    if cfg.serve.engine == "vllm":
        return VLLMEngine.from_config(cfg, _base_name(cfg))
    adapters = [a for a in read_adapters(run) if not a.is_full]  # a full fine-tune is a model of its own
    engine, choice = open_local_engine(cfg, adapters, _base_name(cfg), run.engine_cache,
                                       max_batch=cfg.serve.max_batch_size,
                                       batch_window_s=cfg.serve.batch_window_ms / 1000)
    logging.getLogger("verticalize.serve").info("engine: %s (%s)", choice["engine"], choice["why"])
    return engine


def _base_name(cfg: Config) -> str:
    return Path(cfg.model.base).name.replace("/", "--")


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and ``localhost``: reachable from this machine only. Anything else (0.0.0.0, ::, a
    hostname, an interface address) is exposed."""
    if host.strip().lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, has_key: bool, insecure: bool, api_key_env: str = "VERTICALIZE_API_KEY") -> None:
    """Refuse to bind a non-loopback address without an API key, unless ``insecure`` (then warn)."""
    if has_key or is_loopback(host):
        return
    if not insecure:
        raise UserError(f"refusing to serve on {host!r} without an API key: anyone who can reach it could use the "
                        f"models and read the metrics. Set {api_key_env} (comma-separated keys), bind 127.0.0.1, "
                        "or pass --insecure to serve it open anyway")
    logging.getLogger("verticalize.serve").warning(
        "serving on %r WITHOUT an API key (--insecure): every client that can reach this address can use the "
        "models, send feedback and read /metrics", host)


def serve_run(cfg: Config, run: RunDir, insecure: bool = False, overrides: list[str] | None = None) -> None:
    """``overrides``: the --set items the config was loaded with; a reload loads the new version's config with
    them too."""
    import uvicorn

    has_key = any(k.strip() for k in os.environ.get(cfg.serve.api_key_env, "").split(","))
    check_exposure(cfg.serve.host, has_key, insecure, cfg.serve.api_key_env)  # before the model is loaded
    if cfg.serve.torch_threads:
        import torch

        torch.set_num_threads(cfg.serve.torch_threads)
    gateway = build_gateway(cfg, run)
    enable_reload(gateway, run, overrides)
    app = create_app(gateway)
    # In-flight requests finish on SIGTERM/SIGINT: uvicorn stops accepting, then waits up to this long.
    uvicorn.run(app, host=cfg.serve.host, port=cfg.serve.port, log_level="info",
                timeout_graceful_shutdown=int(cfg.serve.request_timeout_s))


def _feedback_store(run: RunDir) -> FeedbackStore:
    db = feedback_db_path(run)
    if not db.is_file():
        raise FileNotFoundError(f"no feedback store at {db}: serve the run and POST /v1/feedback first")
    return FeedbackStore(db)


def export_feedback(run: RunDir, out: Path | None = None, min_rating: int = 1) -> dict[str, int]:
    target = out or run.feedback_seed
    counts = export_seed_examples(_feedback_store(run), target, min_rating=min_rating)
    counts["path"] = str(target)  # type: ignore[assignment]
    return counts


def _test_questions(run: RunDir, test_set: Path | None) -> list[str]:
    """The questions of the run's test split and of ``test_set``: left out of what feedback trains."""
    questions: list[str] = []
    for path in (run.dataset_split("test"), test_set):
        if path is not None and Path(path).is_file():
            questions += [r.parsed.question for r in read_test_file(path).rows if r.parsed is not None]
    return questions


def export_preferences(run: RunDir, out: Path | None = None, min_rating: int = 1,
                       test_set: Path | None = None) -> dict[str, Any]:
    """Preference pairs of the approved feedback (`feedback.preference_pairs`) to RUN/feedback/preferences.jsonl;
    the questions of the run's test split and of ``test_set`` are left out (decontamination)."""
    pairs, counts = preference_pairs(_feedback_store(run), min_rating=min_rating,
                                     exclude_questions=_test_questions(run, test_set), run=str(run.root.resolve()))
    target = out or run.feedback_preferences
    write_jsonl(target, pairs)
    return {**counts, "path": str(target)}


def export_ratings(run: RunDir, out: Path | None = None, min_rating: int = 1,
                   test_set: Path | None = None) -> dict[str, Any]:
    """Unpaired ratings of the approved feedback (`feedback.rated_answers`, for a kto stage) to
    RUN/feedback/ratings.jsonl; test questions left out as for the pairs."""
    rows, counts = rated_answers(_feedback_store(run), min_rating=min_rating,
                                 exclude_questions=_test_questions(run, test_set), run=str(run.root.resolve()))
    target = out or run.feedback_ratings
    write_jsonl(target, rows)
    return {**counts, "path": str(target)}


__all__ += ["build_engine", "check_exposure", "enable_reload", "is_loopback", "load_run_config", "load_served"]
