"""LoRA (Hu et al. 2021): a low-rank update ΔW = B·A on each target linear layer; merges into the base."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from verticalize.methods._registry import Method, register

if TYPE_CHECKING:
    from pathlib import Path

    from verticalize.config import Config
    from verticalize.plan.arch import Arch
    from verticalize.plan.memory import Setting


class Lora(Method):
    name = "lora"
    summary = "low-rank adapters on the target linear layers (train.lora)"
    order = 10
    merges = True
    use_dora = False  # DoRA: the same adapters plus a magnitude vector (peft's use_dora)

    def peft_config(self, cfg: "Config", base_path: "Path | None", targets: "list[str] | str | None" = None) -> Any:
        import peft

        t = cfg.train
        return peft.LoraConfig(task_type="CAUSAL_LM", r=t.lora.r, lora_alpha=t.lora.alpha,
                               lora_dropout=t.lora.dropout, target_modules=targets,
                               use_dora=self.use_dora)

    def trainable_params(self, arch: "Arch", s: "Setting") -> int:
        shapes = arch.linear_shapes()
        return arch.num_layers * sum(s.lora_r * (shapes[m][0] + shapes[m][1]) for m in s.lora_targets
                                     if m in shapes)

    def adapter_activation_bytes(self, arch: "Arch", s: "Setting", tokens: int) -> float:
        """Per adapted layer with input width d: its fp32 input (t·d·4) and, with dropout, the mask; A's output."""
        shapes = arch.linear_shapes()
        total = 0
        for m in s.lora_targets:
            if m not in shapes:
                continue
            d_in = shapes[m][0]
            per = 4 + (s.dropout_mask_bytes if s.lora_dropout > 0 else 0)
            # With fp32 activations and no dropout, the adapter reads the very tensor the base layer reads.
            if not (s.act_bytes == 4 and s.lora_dropout == 0):
                total += tokens * d_in * per
            total += tokens * s.lora_r * 4
        return float(total)


register(Lora())
