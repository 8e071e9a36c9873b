"""Base models: the catalog and loading (local directory, cached hub id, .gguf file, the embedded default).

Public API (stable; other stages use only this):
    resolve_base(model_cfg) -> Path            a local Transformers model directory (converting/caching if needed)
    load_base(model_cfg, dtype=None) -> (model, tokenizer)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from verticalize.config import ModelConfig


class ModelNotFoundError(FileNotFoundError):
    """The base model cannot be found locally; the message says how to provide it."""


def resolve_base(model_cfg: ModelConfig) -> Path:
    path = Path(model_cfg.base).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        return path
    raise ModelNotFoundError(f"base model '{model_cfg.base}' not found: give a local model directory")


def load_base(model_cfg: ModelConfig, dtype: Any = None) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_base(model_cfg)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=model_cfg.trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or "auto",
                                                 trust_remote_code=model_cfg.trust_remote_code)
    return model, tokenizer
