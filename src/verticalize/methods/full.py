"""Full fine-tuning: every weight trains (no PEFT); the baseline the PEFT methods are compared against.

States and activations of a model whose every weight trains are the planner's own terms
(``verticalize.plan.memory``: ``trains_base``); a layered stage continues from its parent's whole model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from verticalize.methods._registry import Method, register

if TYPE_CHECKING:
    from verticalize.plan.arch import Arch
    from verticalize.plan.memory import Setting


class Full(Method):
    name = "full"
    summary = "every weight trains (no PEFT): the baseline"
    order = 1000
    trains_base = True

    def trainable_params(self, arch: "Arch", s: "Setting") -> int:
        return arch.num_params


register(Full())
