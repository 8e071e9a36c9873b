"""IA³ (Liu et al. 2022): trained scaling vectors on the key and value outputs and the MLP down-projection input;
merges into the base."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from verticalize.methods._registry import Method, register

if TYPE_CHECKING:
    from pathlib import Path

    from verticalize.config import Config
    from verticalize.plan.arch import Arch
    from verticalize.plan.memory import Setting


class IA3(Method):
    name = "ia3"
    summary = "trained scaling vectors on k, v and the MLP down-projection input (PEFT's defaults)"
    order = 60
    merges = True

    def peft_config(self, cfg: "Config", base_path: "Path | None", targets: "list[str] | str | None" = None) -> Any:
        import peft

        return peft.IA3Config(task_type="CAUSAL_LM")

    def trainable_params(self, arch: "Arch", s: "Setting") -> int:
        return arch.num_layers * (2 * arch.kv_dim + arch.intermediate_size)


register(IA3())
