"""Merged weights: the base with a LoRA-family adapter (and a layered stage's parents) folded in, as a plain
safetensors model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from verticalize.config import ModelConfig
from verticalize.models import load_adapter


def export_merged(model_cfg: ModelConfig, adapter_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Merge and save; validated by reloading the result and comparing its logits with the adapter's.

    A layered stage is loaded the way it was trained (`load_adapter`: its parents merged into the base first), so
    the merged model is the whole lineage.
    """
    import torch
    from transformers import AutoModelForCausalLM

    peft_model, tokenizer = load_adapter(model_cfg, adapter_dir, dtype=torch.float32)
    probe = tokenizer("The first rule of the domain is", return_tensors="pt")
    with torch.inference_mode():
        expected = peft_model(**probe).logits
    merged = peft_model.merge_and_unload()
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    reloaded = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32, use_safetensors=True)
    with torch.inference_mode():
        got = reloaded(**probe).logits
    max_diff = float((got - expected).abs().max())
    if max_diff > 1e-3:
        raise RuntimeError(f"merged model at {out_dir} differs from base+adapter (max logit diff {max_diff:.2e})")
    return {"path": str(out_dir), "max_logit_diff": max_diff,
            "files": sorted(p.name for p in out_dir.iterdir())}
