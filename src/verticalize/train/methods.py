"""Adaptation methods, all through PEFT (``full`` = every weight trainable, no PEFT), and the precision policy.

Precision: with bf16 the frozen base of a PEFT method is *stored* in bf16 while the adapter stays fp32 (PEFT's
``autocast_adapter_dtype``), which on a CPU with AVX-512 bf16 is about twice as fast as fp32 and halves the
base's memory. Full fine-tuning keeps fp32 master weights and computes under bf16 autocast.

Layered stages (``parents``, root first): for methods whose weights merge (lora, dora, qlora, ia3) every earlier
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
from verticalize.train.data import TrainError

PEFT_METHODS = ("lora", "dora", "qlora", "prefix", "prompt", "ia3")
VIRTUAL_TOKEN_METHODS = ("prefix", "prompt")  # they add virtual tokens, so examples cannot be packed
MERGEABLE_METHODS = ("lora", "dora", "qlora", "ia3")


@dataclass
class Precision:
    name: str  # fp32 | bf16 | fp16
    base_dtype: torch.dtype  # dtype the (frozen) base weights are stored in
    autocast: torch.dtype | None  # autocast dtype for the forward pass, None = off


def cpu_has_bf16() -> bool:
    from verticalize.models import bf16_supported
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
    if train_cfg.method == "full":
        return Precision(name, torch.float32, half)
    return Precision(name, half, None)


def check_method_supported(train_cfg: TrainConfig, device: torch.device) -> None:
    """Refuse impossible settings before any weights are loaded."""
    if train_cfg.method == "qlora":
        if device.type != "cuda":
            raise TrainError("train.method=qlora needs a CUDA GPU (4-bit weights through bitsandbytes); on this "
                             "machine use train.method=lora")
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise TrainError("train.method=qlora needs bitsandbytes: pip install 'verticalize[gpu]'") from None


def lora_targets(cfg: Config) -> list[str] | str | None:
    """Configured targets; 'auto' → the catalog's targets for this base, else PEFT's default for the architecture."""
    targets = cfg.train.lora.target_modules
    if targets != "auto":
        return targets
    try:
        from verticalize.models.catalog import get_spec
        spec = get_spec(cfg.model.base)
        if spec is not None and getattr(spec, "lora_targets", None):
            return list(spec.lora_targets)
    except Exception:  # no catalog yet, or a base that is not in it: PEFT knows the usual architectures
        pass
    return None


def _peft_config(cfg: Config, base_path: Path | None) -> Any:
    import peft

    t = cfg.train
    if t.method in ("lora", "dora", "qlora"):
        return peft.LoraConfig(task_type="CAUSAL_LM", r=t.lora.r, lora_alpha=t.lora.alpha,
                               lora_dropout=t.lora.dropout, target_modules=lora_targets(cfg),
                               use_dora=t.method == "dora")
    if t.method == "ia3":
        return peft.IA3Config(task_type="CAUSAL_LM")
    if t.method == "prefix":
        return peft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=t.prefix.num_virtual_tokens)
    if t.method == "prompt":
        if t.prefix.prompt_init_text:
            return peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=t.prefix.num_virtual_tokens,
                                           prompt_tuning_init="TEXT", prompt_tuning_init_text=t.prefix.prompt_init_text,
                                           tokenizer_name_or_path=str(base_path))
        return peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=t.prefix.num_virtual_tokens)
    raise TrainError(f"train.method={t.method} is not a PEFT method")


def _load_qlora_base(cfg: Config, device: torch.device) -> tuple[Any, Any]:
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    from verticalize.models import resolve_base

    path = resolve_base(cfg.model)
    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                             bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(path, quantization_config=bnb, dtype=torch.bfloat16,
                                                 device_map={"": device.index or 0},
                                                 trust_remote_code=cfg.model.trust_remote_code)
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.train.gradient_checkpointing)
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.model.trust_remote_code)
    return model, tok


def layering(method: str) -> str:
    return "merged-parents" if method in MERGEABLE_METHODS else "continued"


def build_model(cfg: Config, precision: Precision, device: torch.device,
                parents: list[Path] | tuple[Path, ...] = ()) -> tuple[Any, Any, dict[str, Any]]:
    """(model ready to train, tokenizer, parameter counts). ``parents``: earlier stages' outputs, root first."""
    from verticalize.models import load_base, resolve_base

    t = cfg.train
    check_method_supported(t, device)
    parent = parents[-1] if parents else None
    if t.method == "full":
        if parent is not None:
            from transformers import AutoModelForCausalLM, AutoTokenizer
            model = AutoModelForCausalLM.from_pretrained(parent, dtype=precision.base_dtype)
            tok = AutoTokenizer.from_pretrained(parent)
        else:
            model, tok = load_base(cfg.model, dtype=precision.base_dtype)
        model.requires_grad_(True)
    else:
        import peft
        model, tok = _load_qlora_base(cfg, device) if t.method == "qlora" else load_base(cfg.model,
                                                                                         dtype=precision.base_dtype)
        if parent is not None and t.method not in MERGEABLE_METHODS:
            model = peft.PeftModel.from_pretrained(model, parent, is_trainable=True)
        else:
            for p in parents:
                model = peft.PeftModel.from_pretrained(model, p).merge_and_unload()
            model = peft.get_peft_model(model, _peft_config(cfg, resolve_base(cfg.model)))
    if t.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if t.method != "full" and hasattr(model, "enable_input_require_grads"):
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
    if method == "full":
        tokenizer.save_pretrained(out_dir)
