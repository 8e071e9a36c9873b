"""Prefix tuning (Li & Liang 2021): trained virtual keys and values in every layer; cannot merge or pack."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from verticalize.methods._registry import Method, register

if TYPE_CHECKING:
    from pathlib import Path

    from verticalize.config import Config
    from verticalize.plan.arch import Arch
    from verticalize.plan.memory import Setting


class Prefix(Method):
    name = "prefix"
    summary = "trained virtual keys/values in every layer (train.prefix)"
    order = 40
    virtual_keys = True

    def peft_config(self, cfg: "Config", base_path: "Path | None", targets: "list[str] | str | None" = None) -> Any:
        import peft

        return peft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=cfg.train.prefix.num_virtual_tokens)

    def trainable_params(self, arch: "Arch", s: "Setting") -> int:
        # PEFT: virtual tokens × layers × (key, value) × KV width (GQA-aware)
        return s.virtual_tokens * arch.num_layers * 2 * arch.kv_dim


register(Prefix())
