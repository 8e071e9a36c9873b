"""Resolving and loading base models and adapters: local directories, missing models, dtypes, PEFT adapters."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from verticalize.artifacts import ADAPTER_META
from verticalize.cli import app
from verticalize.config import ModelConfig
from verticalize.models import (ModelNotFoundError, bf16_supported, load_adapter, load_base, resolve_base,
                                resolve_dtype)


def test_local_directory_resolves_to_itself_and_loads(tiny_model_dir):
    cfg = ModelConfig(base=str(tiny_model_dir), dtype="float32")
    assert resolve_base(cfg) == tiny_model_dir
    model, tok = load_base(cfg)
    assert model.dtype == torch.float32 and not model.training
    assert tok.pad_token == "<|endoftext|>" and tok.chat_template
    model_bf16, _ = load_base(cfg, dtype="bf16")
    assert model_bf16.dtype == torch.bfloat16


def test_uncached_hub_id_says_how_to_provide_the_weights(monkeypatch, tmp_path):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    with pytest.raises(ModelNotFoundError) as err:
        resolve_base(ModelConfig(base="qwen2.5-7b-instruct"))
    msg = str(err.value)
    assert "hf download Qwen/Qwen2.5-7B-Instruct --local-dir ./models/Qwen2.5-7B-Instruct" in msg
    assert "model.base=./models/Qwen2.5-7B-Instruct" in msg and "never downloads" in msg
    with pytest.raises(ModelNotFoundError, match="hf download someorg/some-model"):
        resolve_base(ModelConfig(base="someorg/some-model"))


def test_cached_hub_snapshot_is_found_offline(monkeypatch, tmp_path, tiny_model_dir):
    # The Hugging Face cache layout: models--org--name/{refs/main, snapshots/<rev>/...}
    repo = tmp_path / "hub" / "models--acme--tiny-chat"
    snap = repo / "snapshots" / "0123abcd"
    shutil.copytree(tiny_model_dir, snap)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_base(ModelConfig(base="acme/tiny-chat")) == snap


def test_bad_local_inputs_give_clear_errors(tmp_path, tiny_model_dir):
    with pytest.raises(ModelNotFoundError, match="GGUF file not found: .*missing.gguf"):
        resolve_base(ModelConfig(base=str(tmp_path / "missing.gguf")))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        resolve_base(ModelConfig(base=str(empty)))
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(tiny_model_dir / "config.json", pickled)
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ModelNotFoundError, match="safetensors only"):
        resolve_base(ModelConfig(base=str(pickled)))
    with pytest.raises(ModelNotFoundError, match="not a catalog name"):
        resolve_base(ModelConfig(base="not a model"))


def test_dtype_resolution():
    assert resolve_dtype("float32") == torch.float32
    assert resolve_dtype("bf16") == torch.bfloat16
    assert resolve_dtype(torch.float16) == torch.float16
    assert resolve_dtype("auto") == (torch.bfloat16 if bf16_supported() else torch.float32)
    with pytest.raises(ValueError, match="unknown dtype 'int3'"):
        resolve_dtype("int3")


def _save_lora(model, out: Path, name: str, parent: str | None, seed: int) -> Path:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                  task_type="CAUSAL_LM", init_lora_weights=False))
    peft_model.save_pretrained(out / name)
    (out / name / ADAPTER_META).write_text(json.dumps({"name": name, "method": "lora", "parent": parent}))
    return out / name


def test_load_adapter_applies_lora_and_its_parent_chain(tiny_model_dir, tmp_path):
    cfg = ModelConfig(base=str(tiny_model_dir), dtype="float32")
    adapters = tmp_path / "adapters"
    domain = _save_lora(load_base(cfg)[0], adapters, "domain", None, seed=1)
    task = _save_lora(load_base(cfg)[0], adapters, "task", "domain", seed=2)
    ids = torch.tensor([[5, 6, 7, 8]])

    base_logits = load_base(cfg)[0](ids).logits
    peft_model, tok = load_adapter(cfg, domain)
    assert type(peft_model).__name__ == "PeftModelForCausalLM" and tok.chat_template
    domain_logits = peft_model(ids).logits
    assert not torch.allclose(domain_logits, base_logits)

    stacked, _ = load_adapter(cfg, task)
    only_task, _ = load_adapter(cfg, task, merge_parents=False)
    with torch.no_grad():
        assert not torch.allclose(stacked(ids).logits, only_task(ids).logits)
    # The stacked model is exactly base + merged domain + task.
    manual = load_adapter(cfg, domain)[0].merge_and_unload()
    from peft import PeftModel
    manual = PeftModel.from_pretrained(manual, str(task))
    with torch.no_grad():
        torch.testing.assert_close(stacked(ids).logits, manual(ids).logits)


def test_load_adapter_full_model_directory_and_missing_dir(tiny_model_dir, tmp_path):
    full = tmp_path / "full"
    shutil.copytree(tiny_model_dir, full)
    (full / ADAPTER_META).write_text(json.dumps({"name": "full", "method": "full", "parent": None}))
    model, tok = load_adapter(ModelConfig(base="unused/base"), full, dtype="float32")
    assert type(model).__name__ == "LlamaForCausalLM" and tok.eos_token == "<|im_end|>"
    with pytest.raises(ModelNotFoundError, match="adapter directory not found"):
        load_adapter(ModelConfig(base=str(tiny_model_dir)), tmp_path / "nope")


def test_cli_lists_and_shows_the_catalog(tiny_model_dir):
    runner = CliRunner()
    listing = runner.invoke(app, ["models"], env={"COLUMNS": "200"})
    assert listing.exit_code == 0 and "qwen2.5-72b-instruct" in listing.output and "query_key_value" in listing.output
    shown = runner.invoke(app, ["models", "show", "llama-2-7b-chat"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "700 million" in shown.output and "11008" in shown.output
    unknown = runner.invoke(app, ["models", "show", "gpt-9"])
    assert unknown.exit_code == 2 and "not in the catalog" in unknown.output
    prepared = runner.invoke(app, ["models", "prepare", "--set", f"model.base={tiny_model_dir}",
                                   "--set", "model.dtype=float32"], env={"COLUMNS": "200"})
    assert prepared.exit_code == 0, prepared.output
    assert str(tiny_model_dir) in prepared.output.replace("\n", "") and "float32" in prepared.output
    missing = runner.invoke(app, ["models", "prepare", "--set", "model.base=/no/such.gguf"])
    assert missing.exit_code == 2 and "GGUF file not found" in missing.output
