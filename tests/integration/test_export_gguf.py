"""GGUF and Ollama exports: merged weights written with `gguf`, read back by gguf, Transformers and llama.cpp."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import make_lora_adapter
from verticalize.artifacts import ADAPTER_META, RunDir
from verticalize.config import load_config
from verticalize.export import ExportError, export_run
from verticalize.export.gguf import permute_for_gguf, read_gguf_summary
from verticalize.export.ollama import parse_modelfile

HAVE_LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None


@pytest.fixture()
def run_and_cfg(tmp_path: Path, tiny_model_dir: Path):
    run = RunDir(tmp_path / "run")
    make_lora_adapter(tiny_model_dir, run.adapters_dir / "task", 3, r=4)
    cfg = load_config(None, [f"model.base={tiny_model_dir}", f"project.run_dir={run.root}",
                             "project.system_prompt=You answer card-fee questions."])
    return run, cfg


def test_permutation_interleaves_rotary_halves():
    # One head of dim 4: rows [x0, x1 | y0, y1] (rotate-half pairs x_i with y_i) → [x0, y0, x1, y1].
    w = np.arange(4, dtype=np.float32).reshape(4, 1)
    assert permute_for_gguf(w, n_head=1)[:, 0].tolist() == [0.0, 2.0, 1.0, 3.0]


def test_f32_gguf_reads_back_exactly(run_and_cfg, tiny_model_dir: Path):
    run, cfg = run_and_cfg
    cfg.serve.gguf_type = "f32"
    result = export_run(cfg, run, "gguf")
    path = Path(result["path"])
    assert path == run.stage("export") / "gguf" / "task" / "model.gguf" and path.is_file()
    summary = read_gguf_summary(path)
    # 2 layers × 9 tensors + token_embd + output_norm; the tied lm_head is not written.
    assert summary["tensors"] == 20 and "output.weight" not in summary["shapes"]
    assert summary["shapes"]["blk.0.attn_q.weight"] == [64, 64]
    assert summary["shapes"]["blk.1.ffn_gate.weight"] == [64, 128]
    assert summary["tokenizer_model"] == "gpt2" and summary["eos_token_id"] == 2
    assert summary["chat_template"].startswith("{% for message in messages %}")
    assert result["eos_token"] == "<|im_end|>"
    assert result["transformers_check"]["relative_max_logit_diff"] < 1e-5
    assert result["transformers_check"]["same_tokens"] is True and result["transformers_check"]["greedy_tokens"] == 8
    check = result["llama_cpp_check"]
    if HAVE_LLAMA_CPP:
        assert check["same_tokenization"] is True
        assert len(check["transformers"]) == 8 and check["llama_cpp"] == check["transformers"]
    else:
        assert "llama-cpp-python is not installed" in check["skipped"]
    assert (run.stage("export") / "gguf" / "manifest.json").is_file()


def test_ollama_export_q8_0_with_modelfile(run_and_cfg):
    run, cfg = run_and_cfg
    cfg.serve.gguf_type = "q8_0"
    result = export_run(cfg, run, "ollama")
    folder = Path(result["path"]).parent
    summary = read_gguf_summary(folder / "model.gguf")
    assert summary["types"]["blk.0.attn_v.weight"] == "Q8_0"
    assert summary["types"]["blk.0.attn_norm.weight"] == "F32"  # norms stay f32 as llama.cpp's converter keeps them
    assert result["transformers_check"]["relative_max_logit_diff"] < 0.1
    parsed = parse_modelfile(folder / "Modelfile")
    assert parsed["FROM"] == ["./model.gguf"]
    assert "<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>" in parsed["TEMPLATE"][0]
    assert 'stop "<|im_end|>"' in parsed["PARAMETER"] and 'stop "<|im_start|>"' in parsed["PARAMETER"]
    assert parsed["SYSTEM"] == ["You answer card-fee questions."]
    assert result["modelfile"]["template"] == "chatml"


def test_prefix_adapter_is_refused_with_a_reason(run_and_cfg, tiny_model_dir: Path):
    from peft import PrefixTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    run, cfg = run_and_cfg
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    model.save_pretrained(run.adapters_dir / "prefixed")
    (run.adapters_dir / "prefixed" / ADAPTER_META).write_text(json.dumps({"name": "prefixed", "method": "prefix"}))
    with pytest.raises(ExportError, match="PREFIX_TUNING: it has no weights to merge"):
        export_run(cfg, run, "gguf", adapter="prefixed")


def test_cli_unknown_adapter_is_one_line(run_and_cfg, tmp_path: Path, tiny_model_dir: Path):
    run, _ = run_and_cfg
    proc = subprocess.run([sys.executable, "-m", "verticalize", "export", str(run.root), "--to", "gguf",
                           "--adapter", "nope", "--set", f"model.base={tiny_model_dir}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "no adapter 'nope' in this run; adapters: task" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_smollm2_f16_gguf_matches_transformers_in_llama_cpp(tmp_path: Path):
    """The real base: metadata copied from the packaged GGUF, greedy tokens equal in llama.cpp and Transformers."""
    if not HAVE_LLAMA_CPP:
        pytest.skip("llama-cpp-python is an optional extra (pip install 'verticalize[llamacpp]')")
    from verticalize.config import ModelConfig
    from verticalize.export.gguf import export_gguf
    from verticalize.models import resolve_base

    base_dir = resolve_base(ModelConfig())
    adapter = make_lora_adapter(base_dir, tmp_path / "lora", 5, r=8)
    result = export_gguf(ModelConfig(), adapter, tmp_path / "gguf", "f16", check_tokens=8)
    assert result["metadata_copied"] > 20  # tokenizer, template and hyper-parameters from the source GGUF
    check = result["llama_cpp_check"]
    assert check["same_tokenization"] is True
    assert check["matching_prefix"] >= 4, check


def test_modelfile_for_a_non_chatml_template_defers_to_the_gguf(tmp_path: Path):
    from verticalize.export.ollama import modelfile_text

    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    text = modelfile_text("model.gguf", "{{ bos_token }}[INST] {{ messages[0]['content'] }} [/INST]",
                          'Say """hi"""', eos_token="</s>")
    (tmp_path / "Modelfile").write_text(text)
    parsed = parse_modelfile(tmp_path / "Modelfile")
    assert "TEMPLATE" not in parsed and parsed["PARAMETER"] == ['stop "</s>"']
    assert parsed["SYSTEM"][0].startswith("Say ") and '"""' not in parsed["SYSTEM"][0]
