"""Shared fixtures: a tiny random Llama model (no weights needed) and small helpers."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from verticalize.models.tiny import build_tiny_model

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LlamaForCausalLM + tokenizer with a ChatML chat template, written once per session."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture()
def one_torch_thread():
    """Tiny matrices: one thread is faster, and on a shared 2-core machine two threads can stall each other."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def require_program(name: str) -> str:
    """Path of a system program; skip when missing locally, fail under CI (where the README's set-up installs it)."""
    path = shutil.which(name)
    if path:
        return path
    if IN_CI:
        pytest.fail(f"{name} is required under CI=true; `make test` installs it (apt-get install -y {name})")
    pytest.skip(f"{name} not installed")


def make_lora_adapter(base_dir: Path, out: Path, seed: int, r: int = 4) -> Path:
    """A randomly initialised LoRA adapter (non-zero B, so it changes outputs) in PEFT's format."""
    import json

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    peft_model = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False))
    peft_model.save_pretrained(out)
    (out / "verticalize_adapter.json").write_text(json.dumps({"name": out.name, "method": "lora"}))
    return out
