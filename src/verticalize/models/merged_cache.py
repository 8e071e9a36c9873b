"""Merged models on disk for the CPU engines: which runs can be served merged, and where each merged file lives.

The OpenVINO engine (a GGUF per served model) and the ONNX Runtime engine (an ONNX model directory per served
model) both serve the base, or the base with one LoRA-family adapter and its layered parents merged into the
weights (`gguf_writer.merged_model`). Each such file is written once, under the run's engine cache, named by a
hash of what it is made from — base and adapter files, the lineage, the format — and reused while those are
unchanged; an older file of the same model (a retrained adapter) is removed when the new one is written.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Iterable

from verticalize.artifacts import TrainedAdapter
from verticalize.models.gguf_writer import SUPPORTED_ARCHS
from verticalize.models.resolve import resolve_base


def why_not_mergeable(model_cfg: Any, adapters: Iterable[TrainedAdapter]) -> str | None:
    """None when the base and every adapter in ``adapters`` can be served merged; else the reason, in words."""
    arch = _base_architecture(model_cfg)
    if arch not in SUPPORTED_ARCHS:
        return f"the base is '{arch}' and merged serving supports {', '.join(sorted(SUPPORTED_ARCHS))}"
    for adapter in adapters:
        peft_type = str(adapter_config(adapter.path).get("peft_type", "")).upper()
        if peft_type != "LORA":
            return f"adapter {adapter.name} is {peft_type or adapter.method}: only LoRA-family adapters are merged"
    return None


def _base_architecture(model_cfg: Any) -> str:
    try:
        config = json.loads((resolve_base(model_cfg) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "unknown"
    return str(config.get("model_type", "unknown"))


def adapter_config(path: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(path) / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _files_key(paths: Iterable[Path]) -> list[list[Any]]:
    out = []
    for p in paths:
        for f in sorted(Path(p).glob("*")) if Path(p).is_dir() else [Path(p)]:
            if f.is_file() and f.suffix in (".json", ".safetensors", ".gguf"):
                st = f.stat()
                out.append([f.name, st.st_size, int(st.st_mtime)])
    return out


def merged_path(model_cfg: Any, adapter: TrainedAdapter | None, cache_dir: Path, form: str, version: int,
                suffix: str = "") -> Path:
    """Where the merged ``adapter`` (None: the bare base) in ``form`` (e.g. "q8_0", "int8") lives:
    ``cache_dir/<name>-<form>-<hash><suffix>``."""
    base_dir = resolve_base(model_cfg)
    lineage = [a.path for a in adapter.lineage] if adapter is not None else []
    key = json.dumps({"v": version, "weights": form, "base": str(base_dir.resolve()),
                      "base_files": _files_key([base_dir]), "lineage": [str(p) for p in lineage],
                      "adapter_files": _files_key(lineage)}, sort_keys=True)
    name = adapter.name if adapter is not None else "base"
    return Path(cache_dir) / f"{name}-{form}-{hashlib.sha256(key.encode()).hexdigest()[:12]}{suffix}"


def remove_stale(path: Path) -> None:
    """Remove the other versions of ``path``'s model and form in its directory (``<name>-<form>-*``): a server
    that loaded one keeps its copy in memory."""
    prefix = path.name[:path.name.rindex("-") + 1]  # "<name>-<form>-": the hash is the last part
    for stale in path.parent.glob(f"{prefix}*"):
        if stale != path and not stale.name.endswith(".partial"):
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)
