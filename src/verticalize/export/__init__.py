"""Deployment exports of a run: merged weights, GGUF + Ollama, vLLM multi-LoRA, Triton model repository.

Public API: `export_run(cfg, run, to, adapter=None, out=None) -> dict` (also writes RUN/export/manifest.json).
Each export is validated by loading it back where this machine can.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from verticalize.artifacts import RunDir, write_manifest
from verticalize.config import Config

FORMATS = ("merged", "vllm", "triton")


class ExportError(ValueError):
    """An export that cannot be made from this run; the message says why and what to do."""


def _adapters(run: RunDir) -> dict[str, Path]:
    from verticalize.serve.engine import discover_adapters

    found = discover_adapters(run.adapters_dir)
    if not found:
        raise ExportError(f"no PEFT adapters under {run.adapters_dir}: train first (`verticalize train`)")
    return found


def _pick(adapters: dict[str, Path], name: str | None) -> tuple[str, Path]:
    if name is None:
        name = list(adapters)[-1]  # the last stage: layered training's final adapter
    if name not in adapters:
        raise ExportError(f"no adapter '{name}' in this run; adapters: {', '.join(adapters)}")
    return name, adapters[name]


def export_run(cfg: Config, run: RunDir, to: str, adapter: str | None = None, out: Path | None = None
               ) -> dict[str, Any]:
    from verticalize.models import resolve_base

    if to not in FORMATS:
        raise ExportError(f"unknown export format '{to}'; choose one of {', '.join(FORMATS)}")
    adapters = _adapters(run)
    target = out or run.stage("export") / to
    if to == "merged":
        from verticalize.export.merged import export_merged

        name, path = _pick(adapters, adapter)
        result = export_merged(cfg.model, path, target / name)
    elif to == "vllm":
        from verticalize.export.serving import export_vllm

        result = export_vllm(resolve_base(cfg.model), adapters, target, served_name=Path(cfg.model.base).name)
    else:
        from verticalize.export.serving import export_triton, validate_triton_repository

        result = export_triton(resolve_base(cfg.model), adapters, target)
        problems = validate_triton_repository(target)
        if problems:
            raise ExportError("invalid Triton repository: " + "; ".join(problems))
    write_manifest(run.stage("export") / to, "export", inputs={"adapters": {k: str(v) for k, v in
                                                                             adapters.items()}},
                   config={"to": to, "adapter": adapter}, counts={}, extra={"result": result})
    return result
