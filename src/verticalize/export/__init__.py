"""Deployment exports of a run: merged weights, GGUF + Ollama, vLLM multi-LoRA, Triton model repository.

Public API: `export_run(cfg, run, to, adapter=None, out=None) -> dict` (also writes RUN/export/manifest.json).
Each export is checked by what reads it: merged weights and GGUF are loaded back and compared with Transformers
(GGUF token for token); vLLM and Triton exports are self-contained folders whose engine arguments, paths and
adapters are checked against what vLLM accepts (the engine itself needs a GPU).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from verticalize.artifacts import RunDir, TrainedAdapter, read_adapters, write_manifest
from verticalize.config import Config
from verticalize.engine import BASE_MODEL_ALIAS
from verticalize.errors import ExportError
from verticalize.export.gguf import GGUFExportError, export_gguf
from verticalize.export.merged import export_merged
from verticalize.export.ollama import write_modelfile
from verticalize.export.serving import export_triton, export_vllm, plan_serving
from verticalize.models import resolve_base

FORMATS = ("merged", "gguf", "ollama", "vllm", "triton")

def _trained(run: RunDir) -> list[TrainedAdapter]:
    """Every PEFT adapter in training order: the final one (read_adapters) is the last."""
    trained = [a for a in read_adapters(run) if not a.is_full]
    if not trained:
        raise ExportError(f"no PEFT adapters under {run.adapters_dir}: train first (`verticalize train`)")
    return trained


def _pick(adapters: dict[str, Path], name: str | None) -> tuple[str, Path]:
    if name is None:
        name = list(adapters)[-1]  # the final adapter (read_adapters): the last stage in training order
    if name not in adapters:
        raise ExportError(f"no adapter '{name}' in this run; adapters: {', '.join(adapters)}")
    return name, adapters[name]


def export_run(cfg: Config, run: RunDir, to: str, adapter: str | None = None, out: Path | None = None
               ) -> dict[str, Any]:
    if to not in FORMATS:
        raise ExportError(f"unknown export format '{to}'; choose one of {', '.join(FORMATS)}")
    trained = _trained(run)
    adapters = {a.name: a.path for a in trained}
    target = out or run.export_dir(to)
    if to == "merged":
        name, path = _pick(adapters, adapter)
        result = export_merged(cfg.model, path, target / name)
    elif to in ("gguf", "ollama"):
        result = _export_gguf(cfg, adapters, adapter, target, ollama=(to == "ollama"))
    else:
        plan = plan_serving(resolve_base(cfg.model), trained, adapter)

        def merge(leaf: TrainedAdapter, folder: Path) -> dict[str, Any]:
            return export_merged(cfg.model, leaf.path, folder)
        if to == "vllm":
            result = export_vllm(plan, target, served_name=Path(cfg.model.base).name, merge=merge)
        else:
            result = export_triton(plan, target, merge=merge)
    write_manifest(run.export_dir(to), "export", inputs={"adapters": {k: str(v) for k, v in
                                                                             adapters.items()}},
                   config={"to": to, "adapter": adapter}, counts={}, extra={"result": result})
    return result


def _export_gguf(cfg: Config, adapters: dict[str, Path], adapter: str | None, target: Path, ollama: bool
                 ) -> dict[str, Any]:
    """One merged GGUF in target/<name>/model.gguf (``--adapter base``: the bare base), plus a Modelfile."""
    if adapter == BASE_MODEL_ALIAS:
        name, path = Path(cfg.model.base).name, None
    else:
        name, path = _pick(adapters, adapter)
    try:
        result = export_gguf(cfg.model, path, target / name, cfg.serve.gguf_type, name=name)
    except GGUFExportError as e:
        raise ExportError(str(e)) from None
    if ollama:
        result["modelfile"] = write_modelfile(Path(result["path"]), result.get("chat_template"),
                                              cfg.project.system_prompt, result.get("eos_token"))
    result.pop("chat_template", None)
    return result
