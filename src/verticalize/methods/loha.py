"""LoHa (Hyeon-Woo et al. 2022, FedPara; LyCORIS): the update of each target linear layer is the Hadamard product
of two low-rank products, ΔW = (W1a·W1b) ⊙ (W2a·W2b); merges into the base. Uses train.lora (r, alpha, targets).

This module is the whole method: registering it here is all the config, the trainer and the planner need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from verticalize.methods._registry import Method, register

if TYPE_CHECKING:
    from pathlib import Path

    from verticalize.config import Config
    from verticalize.plan.arch import Arch
    from verticalize.plan.memory import Setting


class LoHa(Method):
    name = "loha"
    summary = "Hadamard product of two low-rank updates on the target linear layers (train.lora)"
    order = 70
    merges = True

    def peft_config(self, cfg: "Config", base_path: "Path | None", targets: "list[str] | str | None" = None) -> Any:
        import peft

        t = cfg.train
        return peft.LoHaConfig(task_type="CAUSAL_LM", r=t.lora.r, alpha=t.lora.alpha,
                               target_modules=targets)

    def trainable_params(self, arch: "Arch", s: "Setting") -> int:
        # PEFT: hada_w1_a, hada_w2_a (out × r) and hada_w1_b, hada_w2_b (r × in) per adapted layer
        shapes = arch.linear_shapes()
        return arch.num_layers * sum(2 * s.lora_r * (shapes[m][0] + shapes[m][1]) for m in s.lora_targets
                                     if m in shapes)

    def adapter_activation_bytes(self, arch: "Arch", s: "Setting", tokens: int) -> float:
        """Per adapted layer with shape d_in × d_out: the fp32 copy of its input the delta's F.linear keeps (the
        base layer's own tensor with fp32 activations) and the fp32 delta weight ΔW itself."""
        shapes = arch.linear_shapes()
        total = 0
        for m in s.lora_targets:
            if m not in shapes:
                continue
            d_in, d_out = shapes[m]
            if s.act_bytes != 4:
                total += tokens * d_in * 4
            total += d_in * d_out * 4
        return float(total)


register(LoHa())
