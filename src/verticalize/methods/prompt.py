"""Prompt tuning (Lester et al. 2021): trained virtual token embeddings before the input; cannot merge or pack."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from verticalize.methods._registry import Method, register

if TYPE_CHECKING:
    from pathlib import Path

    from verticalize.config import Config
    from verticalize.plan.arch import Arch
    from verticalize.plan.memory import Setting


class PromptTuning(Method):
    name = "prompt"
    summary = "trained virtual token embeddings before the input (train.prefix)"
    order = 50
    virtual_positions = True

    def peft_config(self, cfg: "Config", base_path: "Path | None", targets: "list[str] | str | None" = None) -> Any:
        import peft

        p = cfg.train.prefix
        if p.prompt_init_text:
            return peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=p.num_virtual_tokens,
                                           prompt_tuning_init="TEXT", prompt_tuning_init_text=p.prompt_init_text,
                                           tokenizer_name_or_path=str(base_path))
        return peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=p.num_virtual_tokens)

    def trainable_params(self, arch: "Arch", s: "Setting") -> int:
        return s.virtual_tokens * arch.hidden_size


register(PromptTuning())
