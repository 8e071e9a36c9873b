"""Loading a base model (and a trained adapter on top) with the right dtype, safetensors only."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from verticalize.artifacts import TrainedAdapter, read_adapter_meta
from verticalize.config import ModelConfig
from verticalize.methods import get as get_method
from verticalize.methods import method_names
from verticalize.models.errors import ModelNotFoundError
from verticalize.models.resolve import resolve_base

log = logging.getLogger(__name__)

_DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
           "float16": "float16", "fp16": "float16"}


@lru_cache(maxsize=1)
def bf16_supported() -> bool:
    """True when bf16 compute is native here: a CUDA GPU with bf16, or a CPU with AVX512-BF16 or AMX."""
    import torch

    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(cpu, probe, None)
        if fn is not None:
            try:
                if fn():
                    return True
            except Exception:  # a probe missing on this build is not an answer
                continue
    return False


def resolve_dtype(requested: Any) -> Any:
    """A torch dtype from a config value ("auto", "float32", "bf16", ...) or a torch dtype."""
    import torch

    if isinstance(requested, torch.dtype):
        return requested
    key = str(requested or "auto").lower().removeprefix("torch.")
    if key == "auto":
        return torch.bfloat16 if bf16_supported() else torch.float32
    if key not in _DTYPES:
        raise ValueError(f"unknown dtype '{requested}'; use auto, float32, bfloat16 or float16")
    return getattr(torch, _DTYPES[key])


def load_base(model_cfg: ModelConfig, dtype: Any = None, quantization_config: Any = None) -> tuple[Any, Any]:
    """(model, tokenizer) for ``model_cfg.base``; ``dtype`` overrides ``model_cfg.dtype`` (auto → bf16 if native).
    ``quantization_config`` (a Transformers quantisation config) loads the weights quantised, on the first GPU."""
    from transformers import AutoModelForCausalLM

    path = resolve_base(model_cfg)
    torch_dtype = resolve_dtype(dtype if dtype is not None else model_cfg.dtype)
    tokenizer = load_tokenizer(path, model_cfg)
    placement = {"quantization_config": quantization_config, "device_map": {"": 0}} if quantization_config else {}
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, use_safetensors=True,
                                                 trust_remote_code=model_cfg.trust_remote_code, **placement)
    model.eval()
    return model, tokenizer


@dataclass(frozen=True)
class BaseForm:
    """How the base under a run's adapters was loaded for answering, beside how it was trained. The ladder
    records it and the gateway logs it, so a figure never silently measures another model than the one trained."""

    trained: str        # "nf4" (QLoRA's 4-bit base) or "unquantised"
    loaded: str         # "nf4" or the torch dtype the base was loaded in
    note: str = ""      # a plain statement when they differ

    @property
    def as_trained(self) -> bool:
        return self.trained != "nf4" or self.loaded == "nf4"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "as_trained": self.as_trained}


def load_base_as_trained(model_cfg: ModelConfig, adapters: Iterable[TrainedAdapter]) -> tuple[Any, Any, BaseForm]:
    """(model, tokenizer, form): the base the way the adapters were trained on it — 4-bit NF4 when a QLoRA stage
    is among them and this machine can load it (CUDA + bitsandbytes); else unquantised, saying so plainly."""
    import torch

    from verticalize.methods.qlora import nf4_config

    # An adapter not made by verticalize may name no known method: it is served on the plain base, as before.
    quantized = [a.name for a in adapters if a.method in method_names() and get_method(a.method).quantizes_base]
    if not quantized:
        model, tokenizer = load_base(model_cfg)
        return model, tokenizer, BaseForm("unquantised", str(model.dtype).removeprefix("torch."))
    reason = None if torch.cuda.is_available() else "no CUDA GPU"
    if reason is None:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            reason = "bitsandbytes is not installed"
    if reason is None:
        model, tokenizer = load_base(model_cfg, dtype=torch.bfloat16, quantization_config=nf4_config())
        return model, tokenizer, BaseForm("nf4", "nf4")
    model, tokenizer = load_base(model_cfg)
    loaded = str(model.dtype).removeprefix("torch.")
    note = (f"{', '.join(quantized)} trained QLoRA on a 4-bit NF4 base, but this machine cannot load one ({reason}): "
            f"the answers come from the unquantised {loaded} base with the adapter on it, not from the model "
            "as trained")
    log.warning(note)
    return model, tokenizer, BaseForm("nf4", loaded, note)


def load_tokenizer(path: str | Path, model_cfg: ModelConfig) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=model_cfg.trust_remote_code)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token  # batching needs a pad token; eos is the usual stand-in
    return tokenizer


def load_adapter(model_cfg: ModelConfig, adapter_dir: str | Path, dtype: Any = None,
                 merge_parents: bool = True) -> tuple[Any, Any]:
    """(model, tokenizer) with the adapter in ``adapter_dir`` applied to the base.

    A PEFT adapter gives a ``PeftModel``. A ``method: full`` directory holds a whole model and is loaded as it is.
    When the adapter's metadata names a ``parent`` stage (layered fine-tuning) and that sibling directory exists,
    the parents are applied first and merged into the base weights, so the stage is evaluated on the model it was
    trained on.
    """
    adapter_dir = Path(adapter_dir)
    if not adapter_dir.is_dir():
        raise ModelNotFoundError(f"adapter directory not found: {adapter_dir}; train first (`verticalize train`)")
    meta = read_adapter_meta(adapter_dir) or {}  # {}: an adapter not written by verticalize
    is_peft = (adapter_dir / "adapter_config.json").is_file()
    if meta.get("method") == "full" or (not is_peft and (adapter_dir / "config.json").is_file()):
        return _load_full_model(model_cfg, adapter_dir, dtype)
    if not is_peft:
        raise ModelNotFoundError(f"{adapter_dir} is not a PEFT adapter (no adapter_config.json)")

    model, tokenizer = load_base(model_cfg, dtype)
    if merge_parents:
        model = _merge_parent_chain(model, adapter_dir, meta)
    return _apply_adapter(model, adapter_dir), _adapter_tokenizer(adapter_dir, tokenizer, model_cfg)


def _load_full_model(model_cfg: ModelConfig, model_dir: Path, dtype: Any) -> tuple[Any, Any]:
    """A full fine-tune: the directory is a whole model; its tokenizer, else the base's."""
    from transformers import AutoModelForCausalLM

    tok_dir = model_dir if (model_dir / "tokenizer_config.json").is_file() else resolve_base(model_cfg)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=resolve_dtype(dtype or model_cfg.dtype),
                                                 use_safetensors=True, trust_remote_code=model_cfg.trust_remote_code)
    return model.eval(), load_tokenizer(tok_dir, model_cfg)


def _apply_adapter(model: Any, adapter_dir: Path) -> Any:
    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False)
    return peft_model.eval()


def _merge_parent_chain(model: Any, adapter_dir: Path, meta: dict[str, Any]) -> Any:
    chain: list[Path] = []
    parent, seen = meta.get("parent"), {adapter_dir.name}
    while parent and parent not in seen:
        parent_dir = adapter_dir.parent / parent
        if not (parent_dir / "adapter_config.json").is_file():
            log.warning("adapter %s names parent %s, which is missing; applying it to the bare base",
                        adapter_dir.name, parent)
            break
        chain.append(parent_dir)
        seen.add(parent)
        parent = (read_adapter_meta(parent_dir) or {}).get("parent")
    for parent_dir in reversed(chain):  # root stage first
        if not _mergeable(parent_dir):
            # Prefix/prompt tuning has no weights to merge; stacking it under another adapter is not supported.
            log.warning("parent adapter %s (%s) cannot be merged into the base; skipped", parent_dir.name,
                        _peft_type(parent_dir))
            continue
        model = _apply_adapter(model, parent_dir).merge_and_unload()
    return model


def _peft_type(adapter_dir: Path) -> str:
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    return str(cfg.get("peft_type", "")).upper()


def _mergeable(adapter_dir: Path) -> bool:
    return _peft_type(adapter_dir) in ("LORA", "IA3", "LOHA", "LOKR", "ADALORA")


def _adapter_tokenizer(adapter_dir: Path, base_tokenizer: Any, model_cfg: ModelConfig) -> Any:
    if (adapter_dir / "tokenizer_config.json").is_file():
        return load_tokenizer(adapter_dir, model_cfg)
    return base_tokenizer
