"""DoRA (Liu et al. 2024): LoRA on the direction of each weight plus a trained magnitude per output feature."""

from __future__ import annotations

from typing import TYPE_CHECKING

from verticalize.methods._registry import register
from verticalize.methods.lora import Lora

if TYPE_CHECKING:
    from verticalize.plan.arch import Arch
    from verticalize.plan.memory import Setting


class Dora(Lora):
    name = "dora"
    summary = "LoRA with a trained magnitude vector per output feature (peft use_dora)"
    order = 20
    use_dora = True

    def trainable_params(self, arch: "Arch", s: "Setting") -> int:
        shapes = arch.linear_shapes()
        magnitude = sum(shapes[m][1] for m in s.lora_targets if m in shapes)  # one per output feature
        return super().trainable_params(arch, s) + arch.num_layers * magnitude


register(Dora())
