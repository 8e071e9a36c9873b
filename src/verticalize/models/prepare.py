"""``verticalize models prepare``: make the base model ready (convert and cache) and time a load."""

from __future__ import annotations

import time
from typing import Any

from verticalize.config import ModelConfig
from verticalize.models.catalog import get_spec
from verticalize.models.loading import load_base
from verticalize.models.resolve import resolve_base


def prepare_base(model_cfg: ModelConfig) -> dict[str, Any]:
    """Resolve (converting once if needed) and load the base; returns the path, timings and sizes."""
    start = time.perf_counter()
    path = resolve_base(model_cfg)
    resolve_s = time.perf_counter() - start
    start = time.perf_counter()
    model, tokenizer = load_base(model_cfg)
    load_s = time.perf_counter() - start
    spec = get_spec(model_cfg.base)
    return {
        "base": model_cfg.base,
        "path": str(path),
        "catalog": spec.name if spec else None,
        "resolve_seconds": round(resolve_s, 2),  # includes the one-time conversion when it happened now
        "load_seconds": round(load_s, 2),
        "dtype": str(model.dtype).removeprefix("torch."),
        "params": sum(p.numel() for p in model.parameters()),
        "architecture": type(model).__name__,
        "has_chat_template": bool(getattr(tokenizer, "chat_template", None)),
    }
