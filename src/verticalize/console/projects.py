"""Console projects on disk: ``ROOT/<name>/`` with ``project.json``, ``docs/``, ``config.yaml`` and ``runs/``.

A project is made from uploaded files or a folder on the server; its documents go through the real ingest stage
once (into ``preview/``) so the page can show the manifest file by file — ok, or skipped and why — before any
run. Gates are written in the user's words and validated against the metrics the ladder computes.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from verticalize.config import GateConfig, load_config
from verticalize.errors import UserError
from verticalize.evaluate.gates import metric_higher_is_better
from verticalize.evaluate.metrics import METRICS
from verticalize.ingest import ingest
from verticalize.rungs import RUNG_NAMES

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
OPS = (">=", "<=", ">", "<")
# Metrics a gate may name: the registry's (quality, retrieval, cost) and the ladder's own.
GATE_METRICS = {**{m.name: m.description for m in METRICS.values()},
                "refusal_rate": "Share of unanswerable test questions answered with a refusal.",
                "false_refusal_rate": "Share of answerable test questions refused (lower is better).",
                "general_score": "Score on the shipped general-skill probe (forgetting guard).",
                "general_regression": "How much an adapter lost on the general probe against the base "
                                      "(lower is better)."}


class ConsoleError(UserError, ValueError):
    """A request the console refuses; ``status`` and ``param`` say how the API answers it."""

    def __init__(self, message: str, status: int = 400, param: str | None = None, code: str = "invalid_request"):
        super().__init__(message)
        self.status, self.param, self.code = status, param, code


@dataclass
class Upload:
    filename: str
    data: bytes


def metric_catalog() -> list[dict[str, Any]]:
    return [{"name": name, "description": text, "higher_is_better": metric_higher_is_better(name)}
            for name, text in sorted(GATE_METRICS.items())]


class ProjectStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------------------------------ reading
    def path(self, name: str) -> Path:
        if not NAME_RE.match(name or ""):
            raise ConsoleError(f"project name {name!r}: use 1–64 letters, digits, '-' or '_' (starting with a "
                               "letter or digit)", param="name")
        return self.root / name

    def get_dir(self, name: str) -> Path:
        path = self.path(name)
        if not (path / "project.json").is_file():
            raise ConsoleError(f"no project named {name!r}", status=404, code="project_not_found")
        return path

    def info(self, name: str) -> dict[str, Any]:
        path = self.get_dir(name)
        meta = json.loads((path / "project.json").read_text(encoding="utf-8"))
        runs = sorted(p.name for p in (path / "runs").glob("*") if p.is_dir()) if (path / "runs").is_dir() else []
        docs = [p for p in (path / "docs").rglob("*") if p.is_file()] if (path / "docs").is_dir() else []
        return {"name": name, "created": meta.get("created"), "documents": len(docs), "runs": len(runs),
                "gates": meta.get("gates", []), "overrides": meta.get("overrides", [])}

    def names(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if (p / "project.json").is_file())

    def manifest(self, name: str) -> dict[str, Any]:
        path = self.get_dir(name) / "preview" / "manifest.json"
        return _manifest_view(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else {}

    # ------------------------------------------------------------------------------------------ writing
    def create(self, name: str, uploads: list[Upload] | None = None, folder: str | None = None,
               overrides: list[str] | None = None) -> dict[str, Any]:
        """A project from uploaded files or a server folder. Files that cannot be used are listed as skipped with
        the reason; the project is made when at least one is usable (else 400 and nothing is kept)."""
        path = self.path(name)
        if path.exists():
            raise ConsoleError(f"project {name!r} exists already", status=409, param="name", code="project_exists")
        if not uploads and not folder:
            raise ConsoleError("give the documents: upload files, or name a folder on the server", param="files")
        docs = path / "docs"
        docs.mkdir(parents=True)
        refused: list[dict[str, Any]] = []
        try:
            if folder:
                src = Path(folder).expanduser()
                if not src.is_dir():
                    raise ConsoleError(f"folder {folder!r} does not exist on the server (or is not a folder)",
                                       param="folder")
                shutil.copytree(src, docs, dirs_exist_ok=True)
            for up in uploads or []:
                refused += _save_upload(docs, up)
            cfg = self._config(path, overrides or [])
            manifest = ingest([str(docs)], path / "preview", cfg.ingest)
        except ConsoleError:
            shutil.rmtree(path, ignore_errors=True)
            raise
        except UserError as e:
            shutil.rmtree(path, ignore_errors=True)
            raise ConsoleError(f"the documents could not be read: {e}", param="files") from e
        view = _manifest_view(manifest, refused)
        if not view["counts"]["ok"]:
            shutil.rmtree(path, ignore_errors=True)
            reasons = "; ".join(f"{f['path']}: {f['reason']}" for f in view["files"]) or "no files"
            raise ConsoleError(f"none of the documents can be used ({reasons})", param="files",
                               code="no_usable_documents")
        meta = {"name": name, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "gates": [],
                "overrides": list(overrides or [])}
        (path / "project.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
        self.write_config(name)
        return {"project": self.info(name), "manifest": view}

    def set_gates(self, name: str, gates: list[dict[str, Any]]) -> list[dict[str, Any]]:
        path = self.get_dir(name)
        clean = [_check_gate(i, g) for i, g in enumerate(gates)]
        meta = json.loads((path / "project.json").read_text(encoding="utf-8"))
        meta["gates"] = clean
        (path / "project.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
        self.write_config(name)
        return clean

    def write_config(self, name: str) -> Path:
        """``config.yaml``: the project's documents and gates over the shipped defaults (a run adds its own
        run directory and overrides on the command line)."""
        path = self.get_dir(name)
        meta = json.loads((path / "project.json").read_text(encoding="utf-8"))
        doc = {"project": {"name": name, "docs": [str((path / "docs").resolve())]},
               "requirements": {"gates": [{k: g[k] for k in ("goal", "metric", "op", "threshold")}
                                          for g in meta.get("gates", [])]}}
        target = path / "config.yaml"
        target.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
        return target

    def _config(self, path: Path, overrides: list[str]) -> Any:
        try:
            return load_config(None, overrides)
        except Exception as e:  # noqa: BLE001 - a bad override is the user's input: say which
            raise ConsoleError(f"settings: {e}", param="set") from e


def _save_upload(docs: Path, up: Upload) -> list[dict[str, Any]]:
    """Write one upload under ``docs`` by its bare file name; a name that cannot be stored is reported."""
    raw = (up.filename or "").replace("\\", "/")
    name = raw.rsplit("/", 1)[-1].strip()
    if not name or name in (".", "..") or name.startswith("."):
        return [{"path": raw or "(no name)", "status": "skipped", "reason": "no usable file name", "chunks": 0,
                 "chars": 0}]
    if not up.data:
        return [{"path": name, "status": "skipped", "reason": "empty file", "chunks": 0, "chars": 0}]
    target = docs / name
    if target.exists():
        stem, suffix = target.stem, target.suffix
        target = docs / f"{stem}-{len(list(docs.glob(stem + '*')))}{suffix}"
    target.write_bytes(up.data)
    return []


def _manifest_view(manifest: dict[str, Any], refused: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    files = [{"path": f.get("source") or f.get("path"), "status": f.get("status"),
              "reason": f"{f['reason']}: {f['detail']}" if f.get("detail") else f.get("reason") or "",
              "chunks": f.get("chunks", 0), "chars": f.get("chars", 0)}
             for f in manifest.get("files", [])] + list(refused or [])
    ok = sum(f["status"] == "ok" for f in files)
    return {"files": files, "counts": {"ok": ok, "skipped": len(files) - ok,
                                       "chunks": sum(int(f.get("chunks") or 0) for f in files)}}


def _check_gate(i: int, gate: Any) -> dict[str, Any]:
    def bad(field: str, message: str) -> ConsoleError:
        return ConsoleError(f"gate {i + 1}: {message}", status=422, param=f"gates[{i}].{field}",
                            code="invalid_gate")

    if not isinstance(gate, dict):
        raise bad("goal", "each gate is an object with goal, metric, op and threshold")
    goal = str(gate.get("goal") or "").strip()
    if not goal:
        raise bad("goal", "say the business goal in words (e.g. “answers match the clause”)")
    metric = str(gate.get("metric") or "")
    if metric not in GATE_METRICS:
        raise bad("metric", f"metric {metric!r} is unknown; choose one of {', '.join(sorted(GATE_METRICS))}")
    op = str(gate.get("op") or "")
    if op not in OPS:
        raise bad("op", f"comparison {op!r} is unknown; choose one of {', '.join(OPS)}")
    try:
        threshold = float(gate.get("threshold"))
    except (TypeError, ValueError):
        raise bad("threshold", f"threshold {gate.get('threshold')!r} is not a number") from None
    if threshold != threshold or threshold in (float("inf"), float("-inf")):
        raise bad("threshold", "threshold must be a finite number")
    if metric in METRICS and METRICS[metric].kind in ("qa", "classification", "retrieval") and \
            not 0.0 <= threshold <= 1.0:
        raise bad("threshold", f"{metric} is a share between 0 and 1; {threshold} can never be met or always is")
    rung = gate.get("rung") or None
    if rung is not None and rung not in RUNG_NAMES:
        raise bad("rung", f"rung {rung!r} is unknown; choose one of {', '.join(RUNG_NAMES)}")
    GateConfig(goal=goal, metric=metric, op=op, threshold=threshold)  # the run's own schema accepts it
    return {"goal": goal, "metric": metric, "op": op, "threshold": threshold, "rung": rung}
