"""QLoRA (Dettmers et al. 2023): LoRA on a base stored in 4-bit NF4 through bitsandbytes; CUDA only.

NF4 bytes per quantised weight ≈ 0.516: 0.5 for the 4-bit codes + 1/64 for 8-bit block constants + 4/(64·256)
for the second-level fp32 constants (double quantisation); embeddings and norms stay 16-bit. Every 4-bit weight
is dequantised in forward and backward, so throughput is taken × 0.7.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from verticalize.methods._registry import register
from verticalize.methods.lora import Lora

if TYPE_CHECKING:
    from pathlib import Path

    from verticalize.config import Config
    from verticalize.plan.arch import Arch
    from verticalize.plan.memory import Setting

NF4_BYTES_PER_PARAM = 0.5 + 1 / 64 + 4 / (64 * 256)
QLORA_SPEED_FACTOR = 0.7


def nf4_config() -> Any:
    """The 4-bit quantisation QLoRA trains on (NF4, double quantisation, bf16 compute): one definition for the
    trainer and for loading the base the way it was trained (``models.load_base_as_trained``)."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


class QLora(Lora):
    name = "qlora"
    summary = "LoRA on a 4-bit NF4 base (bitsandbytes, CUDA)"
    order = 30
    quantizes_base = True
    needs_cuda = True
    speed_factor = QLORA_SPEED_FACTOR

    def unsupported_reason(self, device: Any) -> str | None:
        if device.type != "cuda":
            return ("train.method=qlora needs a CUDA GPU (4-bit weights through bitsandbytes); on this machine use "
                    "train.method=lora")
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            return "train.method=qlora needs bitsandbytes: pip install 'verticalize[gpu]'"
        return None

    def load_base(self, cfg: "Config", precision: Any, device: Any, base_path: "Path") -> tuple[Any, Any]:
        import torch
        from peft import prepare_model_for_kbit_training
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = base_path
        model = AutoModelForCausalLM.from_pretrained(path, quantization_config=nf4_config(), dtype=torch.bfloat16,
                                                     device_map={"": device.index or 0},
                                                     trust_remote_code=cfg.model.trust_remote_code)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.train.gradient_checkpointing)
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.model.trust_remote_code)
        return model, tok

    def base_weight_bytes(self, arch: "Arch", s: "Setting") -> float:
        quantized = arch.num_layers * arch.layer_linear_params()
        return quantized * NF4_BYTES_PER_PARAM + (arch.num_params - quantized) * 2.0

    def notes(self, s: "Setting", device_kind: str) -> list[str]:
        if device_kind != "gpu":
            return ["QLoRA needs a CUDA GPU (bitsandbytes 4-bit); on this device training refuses it"]
        return []


register(QLora())
