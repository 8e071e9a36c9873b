"""Serving-engine artifacts: a vLLM multi-LoRA launch script and a Triton (vLLM backend) model repository.

Both point at the base model directory and the run's PEFT adapters in place; vLLM reads PEFT's format directly.
"""

from __future__ import annotations

import json
import shlex
import stat
from pathlib import Path
from typing import Any

CONFIG_PBTXT = """backend: "vllm"

# The vLLM engine batches internally; Triton hands it one request at a time.
instance_group [
  {
    count: 1
    kind: KIND_MODEL
  }
]
"""


def _max_rank(adapters: dict[str, Path]) -> int:
    ranks = [json.loads((d / "adapter_config.json").read_text()).get("r", 8) for d in adapters.values()]
    supported = (8, 16, 32, 64, 128, 256)  # vLLM accepts only these values for --max-lora-rank
    need = max(ranks, default=8)
    return next((r for r in supported if r >= need), need)


def _lora_adapters(adapters: dict[str, Path]) -> dict[str, Path]:
    """vLLM serves LoRA adapters only (not prefix/prompt/IA3); the others are listed as left out."""
    out = {}
    for name, d in adapters.items():
        peft_type = json.loads((d / "adapter_config.json").read_text()).get("peft_type", "")
        if peft_type == "LORA":
            out[name] = d
    return out


def export_vllm(base_dir: Path, adapters: dict[str, Path], out_dir: Path, served_name: str,
                port: int = 8000) -> dict[str, Any]:
    lora = _lora_adapters(adapters)
    args = ["vllm", "serve", str(base_dir.resolve()), "--served-model-name", served_name, "--port", str(port)]
    if lora:
        args += ["--enable-lora", "--max-lora-rank", str(_max_rank(lora)), "--max-loras", str(len(lora)),
                 "--lora-modules", *[f"{n}={d.resolve()}" for n, d in lora.items()]]
    out_dir.mkdir(parents=True, exist_ok=True)
    script = out_dir / "launch_vllm.sh"
    script.write_text("#!/usr/bin/env bash\n# Multi-LoRA serving of this run with vLLM (GPU). The gateway can "
                      "forward to it (serve.engine=vllm).\nset -euo pipefail\nexec " + " ".join(
                          shlex.quote(a) for a in args) + ' "$@"\n', encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return {"path": str(script), "args": args, "lora_modules": sorted(lora),
            "left_out": sorted(set(adapters) - set(lora))}


def export_triton(base_dir: Path, adapters: dict[str, Path], out_dir: Path, model_name: str = "verticalize",
                  gpu_memory_utilization: float = 0.85) -> dict[str, Any]:
    lora = _lora_adapters(adapters)
    version = out_dir / model_name / "1"
    version.mkdir(parents=True, exist_ok=True)
    engine_args: dict[str, Any] = {"model": str(base_dir.resolve()), "disable_log_requests": True,
                                   "gpu_memory_utilization": gpu_memory_utilization, "enforce_eager": False}
    if lora:
        engine_args.update(enable_lora=True, max_lora_rank=_max_rank(lora), max_loras=len(lora))
        (version / "multi_lora.json").write_text(
            json.dumps({n: str(d.resolve()) for n, d in lora.items()}, indent=2), encoding="utf-8")
    (version / "model.json").write_text(json.dumps(engine_args, indent=2), encoding="utf-8")
    (out_dir / model_name / "config.pbtxt").write_text(CONFIG_PBTXT, encoding="utf-8")
    return {"path": str(out_dir), "model": model_name, "lora_modules": sorted(lora),
            "left_out": sorted(set(adapters) - set(lora))}


def validate_triton_repository(repo: Path, model_name: str = "verticalize") -> list[str]:
    """Schema checks of what Triton's vLLM backend reads; returns the problems found (empty = valid)."""
    problems = []
    model_dir = repo / model_name
    pbtxt = model_dir / "config.pbtxt"
    if not pbtxt.is_file() or 'backend: "vllm"' not in pbtxt.read_text():
        problems.append(f"{pbtxt}: missing or not the vllm backend")
    model_json = model_dir / "1" / "model.json"
    try:
        args = json.loads(model_json.read_text())
    except (OSError, ValueError) as e:
        return problems + [f"{model_json}: {e}"]
    if not Path(args.get("model", "")).is_dir():
        problems.append(f"{model_json}: 'model' is not a directory: {args.get('model')}")
    if args.get("enable_lora"):
        lora_file = model_dir / "1" / "multi_lora.json"
        if not lora_file.is_file():
            problems.append(f"{lora_file}: required when enable_lora is true")
        else:
            for name, path in json.loads(lora_file.read_text()).items():
                if not (Path(path) / "adapter_config.json").is_file():
                    problems.append(f"{lora_file}: adapter '{name}' has no adapter_config.json at {path}")
    return problems
