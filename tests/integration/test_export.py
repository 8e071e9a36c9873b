import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_lora_adapter
from verticalize.artifacts import RunDir
from verticalize.config import load_config
from verticalize.export import ExportError, export_run
from verticalize.export.serving import validate_triton_repository


@pytest.fixture()
def run_with_adapters(tmp_path: Path, tiny_model_dir: Path) -> tuple[RunDir, object]:
    run = RunDir(tmp_path / "run")
    make_lora_adapter(tiny_model_dir, run.adapters_dir / "domain", 1, r=4)
    make_lora_adapter(tiny_model_dir, run.adapters_dir / "task", 2, r=12)
    cfg = load_config(None, [f"model.base={tiny_model_dir}", f"project.run_dir={run.root}"])
    return run, cfg


def test_merged_export_matches_adapter(run_with_adapters):
    run, cfg = run_with_adapters
    result = export_run(cfg, run, "merged")
    merged = Path(result["path"])
    assert merged.name == "task" and (merged / "model.safetensors").is_file()
    assert result["max_logit_diff"] < 1e-3
    assert not (merged / "adapter_config.json").exists()


def test_vllm_script_lists_every_lora(run_with_adapters):
    run, cfg = run_with_adapters
    result = export_run(cfg, run, "vllm")
    text = Path(result["path"]).read_text()
    assert "--enable-lora" in text and "--max-lora-rank 16" in text  # rank 12 rounds up to vLLM's 16
    assert f"domain={run.adapters_dir.resolve() / 'domain'}" in text and "task=" in text
    assert (run.stage("export") / "vllm" / "manifest.json").is_file()


def test_triton_repository_is_valid(run_with_adapters, tiny_model_dir: Path):
    run, cfg = run_with_adapters
    result = export_run(cfg, run, "triton")
    repo = Path(result["path"])
    model_json = json.loads((repo / "verticalize" / "1" / "model.json").read_text())
    assert model_json["enable_lora"] is True and model_json["model"] == str(tiny_model_dir.resolve())
    assert set(json.loads((repo / "verticalize" / "1" / "multi_lora.json").read_text())) == {"domain", "task"}
    assert validate_triton_repository(repo) == []
    (repo / "verticalize" / "1" / "multi_lora.json").unlink()
    assert "required when enable_lora" in validate_triton_repository(repo)[0]


def test_export_errors_are_clear(tmp_path: Path, tiny_model_dir: Path, run_with_adapters):
    run, cfg = run_with_adapters
    with pytest.raises(ExportError, match="unknown export format 'onnx'"):
        export_run(cfg, run, "onnx")
    with pytest.raises(ExportError, match="no adapter 'nope'"):
        export_run(cfg, run, "merged", adapter="nope")
    empty = tmp_path / "empty"
    r = subprocess.run([sys.executable, "-m", "verticalize", "export", str(empty), "--to", "vllm",
                        "--set", f"model.base={tiny_model_dir}"], capture_output=True, text=True)
    assert r.returncode == 2 and "no PEFT adapters" in r.stderr and "Traceback" not in r.stderr
