"""Serving-engine artifacts: a vLLM multi-LoRA launch folder and a Triton (vLLM backend) model repository.

Both are **self-contained**: the base model and the adapters are placed inside the export (hard links where the
file system allows, copies otherwise), and every path the engine reads is relative to the export — the launch
script resolves them from its own folder; Triton's model.json names them under the folder where the repository
is mounted in the container (``/models``, as Triton's documentation runs it). What vLLM cannot load is refused
before anything is written: DoRA adapters (vLLM rejects ``use_dora``), and a layered stage is served as its
merged lineage (vLLM applies one LoRA per request, not a stack). The engine arguments written are checked
against vLLM's own ``AsyncEngineArgs`` when vLLM is importable, else against the recorded field list
(`verticalize.export.vllm_args`).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from verticalize.artifacts import TrainedAdapter
from verticalize.errors import ExportError
from verticalize.export.vllm_args import SUPPORTED_LORA_RANKS, known_engine_args, known_serve_flags

CONFIG_PBTXT = """backend: "vllm"

# The vLLM engine batches internally; Triton hands it one request at a time.
instance_group [
  {
    count: 1
    kind: KIND_MODEL
  }
]
"""
TRITON_MOUNT = "/models"  # where run_triton.sh mounts the repository in the container
TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:25.10-vllm-python-py3"
LAUNCH_SCRIPT = "launch_vllm.sh"
MODEL_DIR = "model"
ADAPTERS_DIR = "adapters"

# Merges a layered stage's whole lineage into one full model at the given folder (export.merged.export_merged).
MergeLineage = Callable[[TrainedAdapter, Path], dict[str, Any]]


@dataclass(frozen=True)
class ServingPlan:
    """What an engine export serves: the model folder's source and the LoRA adapters put on it."""

    model_source: Path | None            # a base directory to place as the model; None: merge `merged_leaf`
    merged_leaf: TrainedAdapter | None   # a layered stage served as its merged lineage
    lora: dict[str, TrainedAdapter]      # served name -> adapter, applied per request on the model
    left_out: dict[str, str]             # adapter name -> why it is not served

    @property
    def served_name(self) -> str | None:
        return self.merged_leaf.name if self.merged_leaf else None


def plan_serving(base_dir: Path, adapters: list[TrainedAdapter], chosen: str | None = None) -> ServingPlan:
    """Decide what vLLM can serve from a run's adapters, refusing what it cannot load with the reason.

    ``chosen`` (``export --adapter``) serves that adapter only. Without it every LoRA adapter trained on the
    bare base is served as a multi-LoRA module — unless the run's final adapter is a layered stage: then the run's
    result is that stage, served as its merged lineage.
    """
    by_name = {a.name: a for a in adapters}
    if chosen is not None and chosen not in by_name:
        raise ExportError(f"no adapter '{chosen}' in this run; adapters: {', '.join(by_name)}")
    dora = [a.name for a in adapters if (chosen is None or a.name == chosen) and _uses_dora(a)]
    if dora:
        raise ExportError(f"vLLM cannot load DoRA adapters (use_dora): {', '.join(dora)}; export them with "
                          "`--to merged` (DoRA merges into plain weights) and serve that model, or train with "
                          "train.method=lora")
    picked = [by_name[chosen]] if chosen else adapters
    final = next((a for a in reversed(adapters) if a.final), adapters[-1] if adapters else None)
    # A layered LoRA-family stage (trained on the base with its parents merged in) is served merged.
    leaf = picked[0] if chosen and picked[0].layered else (final if chosen is None and final is not None
                                                             and final.layered else None)
    left_out: dict[str, str] = {}
    lora: dict[str, TrainedAdapter] = {}
    for a in adapters:
        if chosen is not None and a.name != chosen:
            continue
        if leaf is not None:
            if a is not leaf:
                left_out[a.name] = (f"the export serves the layered stage '{leaf.name}' merged with its lineage; "
                                    "vLLM applies one LoRA per request, so other stages need their own export "
                                    "(--adapter NAME)")
            continue
        kind = _peft_type(a)
        if kind != "LORA":
            left_out[a.name] = f"{kind or 'unknown'} adapters are not served by vLLM (LoRA only)"
        else:
            lora[a.name] = a
    return ServingPlan(None if leaf else base_dir, leaf, lora, left_out)


def export_vllm(plan: ServingPlan, out_dir: Path, served_name: str, merge: MergeLineage,
                port: int = 8000) -> dict[str, Any]:
    """``out_dir/launch_vllm.sh`` with ``model/`` and ``adapters/`` beside it; validated before returning."""
    _place(plan, out_dir, merge)
    name = plan.served_name or served_name
    args = ["vllm", "serve", f"./{MODEL_DIR}", "--served-model-name", name, "--port", str(port)]
    if plan.lora:
        args += ["--enable-lora", "--max-lora-rank", str(_max_rank(plan.lora)), "--max-loras", str(len(plan.lora)),
                 "--lora-modules", *[f"{n}=./{ADAPTERS_DIR}/{n}" for n in plan.lora]]
    script = out_dir / LAUNCH_SCRIPT
    script.write_text(
        "#!/usr/bin/env bash\n# Multi-LoRA serving of this run with vLLM (GPU). Self-contained: the paths are "
        "relative to this folder.\n# The gateway can forward to it (serve.engine=vllm).\nset -euo pipefail\n"
        'cd "$(dirname "$0")"\nexec ' + " ".join(shlex.quote(a) for a in args) + ' "$@"\n', encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    problems = validate_vllm_export(out_dir)
    if problems:
        raise ExportError(f"invalid vLLM export at {out_dir}: " + "; ".join(problems))
    return {"path": str(script), "args": args, "served_model": name, "lora_modules": sorted(plan.lora),
            "left_out": plan.left_out}


def export_triton(plan: ServingPlan, out_dir: Path, merge: MergeLineage, model_name: str = "verticalize",
                  gpu_memory_utilization: float = 0.85) -> dict[str, Any]:
    """A Triton model repository (vLLM backend) with the weights inside; validated before returning."""
    version = out_dir / model_name / "1"
    _place(plan, version, merge)
    mounted = f"{TRITON_MOUNT}/{model_name}/1"
    engine_args: dict[str, Any] = {"model": f"{mounted}/{MODEL_DIR}",
                                   "gpu_memory_utilization": gpu_memory_utilization, "enforce_eager": False}
    if plan.served_name:
        engine_args["served_model_name"] = plan.served_name
    if plan.lora:
        engine_args.update(enable_lora=True, max_lora_rank=_max_rank(plan.lora), max_loras=len(plan.lora))
        (version / "multi_lora.json").write_text(
            json.dumps({n: f"{mounted}/{ADAPTERS_DIR}/{n}" for n in plan.lora}, indent=2), encoding="utf-8")
    (version / "model.json").write_text(json.dumps(engine_args, indent=2), encoding="utf-8")
    (out_dir / model_name / "config.pbtxt").write_text(CONFIG_PBTXT, encoding="utf-8")
    runner = out_dir / "run_triton.sh"
    runner.write_text(
        "#!/usr/bin/env bash\n# Triton Inference Server with its vLLM backend on this repository (GPU, a container "
        f"engine).\n# The repository is mounted at {TRITON_MOUNT}, where model.json and multi_lora.json point.\n"
        'set -euo pipefail\nhere="$(cd "$(dirname "$0")" && pwd)"\n'
        f'exec docker run --rm --gpus all -p 8000:8000 -v "$here":{TRITON_MOUNT} "${{TRITON_IMAGE:-{TRITON_IMAGE}}}" '
        f"tritonserver --model-repository={TRITON_MOUNT}\n", encoding="utf-8")
    runner.chmod(runner.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    problems = validate_triton_repository(out_dir, model_name)
    if problems:
        raise ExportError("invalid Triton repository: " + "; ".join(problems))
    return {"path": str(out_dir), "model": model_name, "lora_modules": sorted(plan.lora),
            "served_model": plan.served_name, "left_out": plan.left_out}


# ------------------------------------------------------------------------------------------------- validation
def validate_vllm_export(folder: Path) -> list[str]:
    """What `vllm serve` would trip on in an export folder: unknown flags, paths outside it, bad adapters."""
    script = folder / LAUNCH_SCRIPT
    try:
        exec_line = next(line for line in script.read_text(encoding="utf-8").splitlines()
                         if line.startswith("exec "))
    except (OSError, StopIteration) as e:
        return [f"{script}: no `exec vllm serve …` line ({e or 'missing'})"]
    args = shlex.split(exec_line)[1:]
    if args[:2] != ["vllm", "serve"] or len(args) < 3:
        return [f"{script}: the exec line does not run `vllm serve MODEL`"]
    problems = _check_model_dir(folder, args[2], script)
    flags = known_serve_flags()
    lora_modules: list[str] = []
    i = 3
    while i < len(args):
        flag = args[i]
        if flag == '"$@"' or flag == "$@":
            break
        if not flag.startswith("--"):
            problems.append(f"{script}: unexpected argument '{flag}'")
        elif flag[2:].replace("-", "_") not in flags:
            problems.append(f"{script}: vLLM has no option {flag}")
        values = []
        while i + 1 < len(args) and not args[i + 1].startswith("--") and args[i + 1] not in ('"$@"', "$@"):
            values.append(args[i + 1])
            i += 1
        if flag == "--lora-modules":
            lora_modules = values
        if flag == "--max-lora-rank" and values and int(values[0]) not in SUPPORTED_LORA_RANKS:
            problems.append(f"{script}: --max-lora-rank {values[0]} is not one of {SUPPORTED_LORA_RANKS}")
        i += 1
    for module in lora_modules:
        name, _, path = module.partition("=")
        problems += _check_adapter(folder, path, f"{script}: adapter '{name}'")
    return problems


def validate_triton_repository(repo: Path, model_name: str = "verticalize") -> list[str]:
    """What Triton's vLLM backend would trip on: the backend, engine arguments vLLM does not know, paths that
    are not inside the repository as mounted at /models, adapters vLLM cannot load. Empty list: valid."""
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
    unknown = sorted(set(args) - known_engine_args())
    if unknown:
        problems.append(f"{model_json}: vLLM's AsyncEngineArgs has no field {', '.join(unknown)}")
    problems += _check_model_dir(repo, _unmounted(args.get("model", "")), model_json)
    if str(args.get("enable_lora", "")).lower() == "true":
        lora_file = model_dir / "1" / "multi_lora.json"
        if not lora_file.is_file():
            problems.append(f"{lora_file}: required when enable_lora is true")
        else:
            for name, path in json.loads(lora_file.read_text()).items():
                problems += _check_adapter(repo, _unmounted(path), f"{lora_file}: adapter '{name}'")
    return problems


def _unmounted(path: str) -> str:
    """A container path under /models as a path relative to the repository root ('' when it is not under it)."""
    prefix = TRITON_MOUNT + "/"
    return "./" + path[len(prefix):] if path.startswith(prefix) else path


def _inside(folder: Path, relative: str) -> Path | None:
    """``relative`` resolved against ``folder`` when it is a relative path that stays inside it."""
    if not relative or Path(relative).is_absolute():
        return None
    target = (folder / relative).resolve()
    return target if target.is_relative_to(folder.resolve()) else None


def _check_model_dir(folder: Path, relative: str, where: Path) -> list[str]:
    target = _inside(folder, relative)
    if target is None:
        return [f"{where}: the model path '{relative}' is not a relative path inside {folder}"]
    if not (target / "config.json").is_file():
        return [f"{where}: no model (config.json) at {relative}"]
    return []


def _check_adapter(folder: Path, relative: str, what: str) -> list[str]:
    target = _inside(folder, relative)
    if target is None:
        return [f"{what}: '{relative}' is not a relative path inside {folder}"]
    config = target / "adapter_config.json"
    if not config.is_file():
        return [f"{what}: no adapter_config.json at {relative}"]
    if json.loads(config.read_text()).get("use_dora"):
        return [f"{what}: DoRA (use_dora) is refused by vLLM"]
    return []


# ---------------------------------------------------------------------------------------------------- helpers
def _place(plan: ServingPlan, folder: Path, merge: MergeLineage) -> None:
    """Put the model and the served adapters inside ``folder`` (replacing an earlier export's)."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in (folder / MODEL_DIR, folder / ADAPTERS_DIR):
        if stale.exists():
            shutil.rmtree(stale)
    if plan.merged_leaf is not None:
        merge(plan.merged_leaf, folder / MODEL_DIR)
    else:
        assert plan.model_source is not None
        _link_tree(plan.model_source, folder / MODEL_DIR)
    for name, adapter in plan.lora.items():
        _link_tree(adapter.path, folder / ADAPTERS_DIR / name)


def _link_tree(source: Path, target: Path) -> None:
    """Copy a folder, hard-linking files where the file system allows (the weights are not duplicated)."""
    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    shutil.copytree(source, target, copy_function=link_or_copy)


def _adapter_config(a: TrainedAdapter) -> dict[str, Any]:
    return json.loads((a.path / "adapter_config.json").read_text())


def _peft_type(a: TrainedAdapter) -> str:
    return str(_adapter_config(a).get("peft_type", ""))


def _uses_dora(a: TrainedAdapter) -> bool:
    return bool(_adapter_config(a).get("use_dora"))


def _max_rank(adapters: dict[str, TrainedAdapter]) -> int:
    need = max((_adapter_config(a).get("r", 8) for a in adapters.values()), default=8)
    fits = [r for r in SUPPORTED_LORA_RANKS if r >= need]
    if not fits:
        raise ExportError(f"LoRA rank {need} is above vLLM's largest --max-lora-rank {SUPPORTED_LORA_RANKS[-1]}")
    return fits[0]
