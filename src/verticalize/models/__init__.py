"""Base models: the catalog and loading (local directory, cached hub id, .gguf file, the embedded default).

Public API (stable; other stages use only this):
    resolve_base(model_cfg) -> Path            a local Transformers model directory (converting/caching if needed)
    load_base(model_cfg, dtype=None) -> (model, tokenizer)
    load_adapter(model_cfg, adapter_dir, dtype=None) -> (peft_model, tokenizer)
    bf16_supported() -> bool                   native bf16 here (CUDA bf16, or CPU AVX512-BF16/AMX)
    resolve_dtype(value) -> torch.dtype        "auto" → bf16 where native, else fp32
    CATALOG, ModelSpec, get_spec(name_or_hf_id), list_specs()
    ModelNotFoundError                          a FileNotFoundError whose message says how to provide the weights
    ModelConversionError                        (a ModelNotFoundError) a GGUF that cannot be converted
"""

from __future__ import annotations

from verticalize.models.catalog import CATALOG, DEFAULT_MODEL, ModelSpec, get_spec, list_specs
from verticalize.models.loading import BaseForm, bf16_supported, load_adapter, load_base, load_base_as_trained, \
    load_tokenizer, resolve_dtype
from verticalize.models.prepare import prepare_base
from verticalize.models.errors import ModelConversionError, ModelNotFoundError
from verticalize.models.resolve import cache_root, embedded_gguf_path, resolve_base

__all__ = ["BaseForm", "load_base_as_trained", "CATALOG", "DEFAULT_MODEL", "ModelSpec", "get_spec", "list_specs", "bf16_supported", "load_adapter",
           "load_base", "load_tokenizer", "resolve_dtype", "prepare_base",
           "ModelNotFoundError", "ModelConversionError", "cache_root", "embedded_gguf_path", "resolve_base"]
