import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_lora_adapter
from verticalize.artifacts import RunDir
from verticalize.config import load_config
from verticalize.export import ExportError, export_run
from verticalize.export.serving import validate_triton_repository, validate_vllm_export


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


def test_vllm_export_is_self_contained_and_checked(run_with_adapters, tmp_path: Path):
    run, cfg = run_with_adapters
    result = export_run(cfg, run, "vllm")
    script = Path(result["path"])
    text = script.read_text()
    assert "--enable-lora" in text and "--max-lora-rank 16" in text  # rank 12 rounds up to vLLM's 16
    assert "domain=./adapters/domain" in text and "task=./adapters/task" in text and "vllm serve ./model" in text
    assert str(run.root) not in text  # no host path: the folder can be moved or copied to the GPU machine
    folder = script.parent
    assert (folder / "model" / "config.json").is_file() and (folder / "adapters" / "task" / "adapter_config.json").is_file()
    assert (run.stage("export") / "vllm" / "manifest.json").is_file()
    moved = tmp_path / "elsewhere"
    shutil.copytree(folder, moved)
    assert validate_vllm_export(moved) == []
    script_text = (moved / "launch_vllm.sh").read_text()
    (moved / "launch_vllm.sh").write_text(script_text.replace("--enable-lora", "--enable-lora --bogus-flag"))
    assert validate_vllm_export(moved) == [f"{moved / 'launch_vllm.sh'}: vLLM has no option --bogus-flag"]
    (moved / "launch_vllm.sh").write_text(script_text.replace("./adapters/task", "/srv/task"))
    assert "'/srv/task' is not a relative path inside" in validate_vllm_export(moved)[0]


def test_triton_repository_is_self_contained_and_checked(run_with_adapters, tmp_path: Path):
    run, cfg = run_with_adapters
    result = export_run(cfg, run, "triton")
    repo = Path(result["path"])
    version = repo / "verticalize" / "1"
    model_json = json.loads((version / "model.json").read_text())
    assert model_json["enable_lora"] is True and model_json["model"] == "/models/verticalize/1/model"
    assert "disable_log_requests" not in model_json  # gone from current vLLM engine args: the model would not load
    lora = json.loads((version / "multi_lora.json").read_text())
    assert lora == {"domain": "/models/verticalize/1/adapters/domain", "task": "/models/verticalize/1/adapters/task"}
    assert (version / "model" / "model.safetensors").is_file() and (repo / "run_triton.sh").is_file()
    assert "-v \"$here\":/models" in (repo / "run_triton.sh").read_text()
    assert validate_triton_repository(repo) == []
    (version / "model.json").write_text(json.dumps({**model_json, "disable_log_requests": True}))
    assert validate_triton_repository(repo) == [
        f"{version / 'model.json'}: vLLM's AsyncEngineArgs has no field disable_log_requests"]
    (version / "model.json").write_text(json.dumps({**model_json, "model": str(run.root)}))
    assert "is not a relative path inside" in validate_triton_repository(repo)[0]
    (version / "model.json").write_text(json.dumps(model_json))
    (version / "multi_lora.json").unlink()
    assert "required when enable_lora" in validate_triton_repository(repo)[0]


def test_engine_exports_refuse_dora_and_serve_a_layered_stage_merged(run_with_adapters):
    run, cfg = run_with_adapters
    task = run.adapters_dir / "task"
    config = json.loads((task / "adapter_config.json").read_text())
    (task / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(ExportError, match=r"vLLM cannot load DoRA adapters \(use_dora\): task"):
        export_run(cfg, run, "vllm")
    with pytest.raises(ExportError, match="DoRA"):
        export_run(cfg, run, "triton", adapter="task")
    (task / "adapter_config.json").write_text(json.dumps(config))
    # A layered stage: trained on the base with 'domain' merged in. vLLM stacks no LoRAs, so the export serves
    # the merged lineage as the model, under the stage's name.
    (task / "verticalize_adapter.json").write_text(json.dumps({"name": "task", "method": "lora", "parent": "domain",
                                                               "layering": "merged-parents"}))
    result = export_run(cfg, run, "vllm")
    folder = Path(result["path"]).parent
    assert result["served_model"] == "task" and result["lora_modules"] == []
    assert "merged with its lineage" in result["left_out"]["domain"]
    assert "--enable-lora" not in Path(result["path"]).read_text()
    assert (folder / "model" / "model.safetensors").is_file() and not (folder / "adapters").exists()
    assert validate_vllm_export(folder) == []


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
