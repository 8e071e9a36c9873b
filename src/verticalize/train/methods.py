"""Building the model a method trains, and the precision policy. The methods themselves (their PEFT configs,
whether they merge or pack, how their base is loaded) are registered in ``verticalize.methods``, one module each;
``full`` = every weight trainable, no PEFT.

Precision: with bf16 the frozen base of a PEFT method is *stored* in bf16 while the adapter stays fp32 (PEFT's
``autocast_adapter_dtype``), which on a CPU with AVX-512 bf16 is about twice as fast as fp32 and halves the
base's memory. Full fine-tuning keeps fp32 master weights and computes under bf16 autocast.

Layered stages (``parents``, root first): for methods whose weights merge (``Method.merges``) every earlier
stage's adapter is merged into the base and a fresh adapter is trained on top ("merged-parents": a task module on
top of the domain module, as the seed's modular design has it; ``verticalize.models.load_adapter`` rebuilds the
same stack). Prefix/prompt tuning cannot merge, so the stage continues training its parent's virtual tokens, and
full fine-tuning continues from the parent's whole model ("continued": the stage directory alone is the model).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from verticalize.config import Config, TrainConfig
from verticalize.methods import Method
from verticalize.methods import get as get_method
from verticalize.methods import methods as registered_methods
from verticalize.models import bf16_supported, load_base, resolve_base
from verticalize.models.catalog import get_spec
from verticalize.train.data import TrainError

# Views of the registry (verticalize.methods), for callers that want names.
PEFT_METHODS = tuple(m.name for m in registered_methods() if m.peft)
VIRTUAL_TOKEN_METHODS = tuple(m.name for m in registered_methods() if not m.packs)  # examples cannot be packed
MERGEABLE_METHODS = tuple(m.name for m in registered_methods() if m.merges)


@dataclass
class Precision:
    name: str  # fp32 | bf16 | fp16
    base_dtype: torch.dtype  # dtype the (frozen) base weights are stored in
    autocast: torch.dtype | None  # autocast dtype for the forward pass, None = off


def cpu_has_bf16() -> bool:
    return bf16_supported()


def resolve_precision(train_cfg: TrainConfig, device: torch.device) -> Precision:
    name = train_cfg.precision
    if name == "auto":
        if device.type == "cuda":
            name = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            name = "bf16" if cpu_has_bf16() else "fp32"
    if name == "fp16" and device.type != "cuda":
        raise TrainError("train.precision=fp16 needs a CUDA GPU; on CPU use bf16 (if supported) or fp32")
    if name == "fp32":
        return Precision("fp32", torch.float32, None)
    half = torch.bfloat16 if name == "bf16" else torch.float16
    if get_method(train_cfg.method).trains_base:
        return Precision(name, torch.float32, half)
    return Precision(name, half, None)


def check_method_supported(train_cfg: TrainConfig, device: torch.device) -> None:
    """Refuse impossible settings before any weights are loaded."""
    _refuse_unsupported(get_method(train_cfg.method), device)


def _refuse_unsupported(method: Method, device: torch.device) -> None:
    reason = method.unsupported_reason(device)
    if reason:
        raise TrainError(reason)


def lora_targets(cfg: Config) -> list[str] | str | None:
    """Configured targets; 'auto' → the catalog's targets for this base, else PEFT's default for the architecture."""
    targets = cfg.train.lora.target_modules
    if targets != "auto":
        return targets
    try:
        spec = get_spec(cfg.model.base)
        if spec is not None and getattr(spec, "lora_targets", None):
            return list(spec.lora_targets)
    except Exception:  # no catalog yet, or a base that is not in it: PEFT knows the usual architectures
        pass
    return None


def _peft_config(cfg: Config, base_path: Path | None) -> Any:
    method = get_method(cfg.train.method)
    if not method.peft:
        raise TrainError(f"train.method={method.name} is not a PEFT method")
    return method.peft_config(cfg, base_path, targets=lora_targets(cfg))


def layering(method: str) -> str:
    return get_method(method).layering


def build_model(cfg: Config, precision: Precision, device: torch.device,
                parents: list[Path] | tuple[Path, ...] = ()) -> tuple[Any, Any, dict[str, Any]]:
    """(model ready to train, tokenizer, parameter counts). ``parents``: earlier stages' outputs, root first."""
    t = cfg.train
    method = get_method(t.method)
    _refuse_unsupported(method, device)
    parent = parents[-1] if parents else None
    if method.trains_base:
        if parent is not None:
            from transformers import AutoModelForCausalLM, AutoTokenizer
            model = AutoModelForCausalLM.from_pretrained(parent, dtype=precision.base_dtype)
            tok = AutoTokenizer.from_pretrained(parent)
        else:
            model, tok = load_base(cfg.model, dtype=precision.base_dtype)
        model.requires_grad_(True)
    else:
        import peft
        base_path = resolve_base(cfg.model)
        loaded = method.load_base(cfg, precision, device, base_path)
        model, tok = loaded if loaded is not None else load_base(cfg.model, dtype=precision.base_dtype)
        if parent is not None and not method.merges:
            model = peft.PeftModel.from_pretrained(model, parent, is_trainable=True)
        else:
            for p in parents:
                model = peft.PeftModel.from_pretrained(model, p).merge_and_unload()
            model = peft.get_peft_model(model, _peft_config(cfg, base_path))
    if t.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if method.peft and hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    model.config.use_cache = False
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return model.to(device), tok, parameter_counts(model)


def parameter_counts(model: Any) -> dict[str, Any]:
    if hasattr(model, "get_nb_trainable_parameters"):
        trainable, total = model.get_nb_trainable_parameters()
    else:
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable_params": int(trainable), "total_params": int(total),
            "trainable_share": round(trainable / max(total, 1), 6)}


def n_virtual_tokens(model: Any) -> int:
    """Extra positions a prompt-tuning model prepends to its logits (prefix tuning adds none)."""
    cfg = getattr(model, "peft_config", {}).get("default") if hasattr(model, "peft_config") else None
    if cfg is not None and getattr(cfg, "peft_type", None) is not None and cfg.peft_type.value == "PROMPT_TUNING":
        return int(cfg.num_virtual_tokens)
    return 0


def save_trained(model: Any, tokenizer: Any, out_dir: Path, method: str) -> None:
    """PEFT format for adapters; a whole safetensors model (+ tokenizer) for full fine-tuning."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    if get_method(method).trains_base:
        tokenizer.save_pretrained(out_dir)
