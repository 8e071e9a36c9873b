"""Run-directory layout and manifests: the only link between stages.

A run directory holds one sub-directory per stage; each stage writes its files there plus a ``manifest.json``
(inputs, resolved config, counts, library versions, a fingerprint). A later stage reads an earlier stage's
artifact only through these paths and manifests, never through its internals. The fingerprint lets the main job
skip a stage whose inputs and config did not change.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Iterator

from verticalize.errors import UserError

STAGES = ("ingest", "kb", "data", "train", "eval", "report", "export", "feedback", "iteration")

MANIFEST = "manifest.json"
ADAPTER_META = "verticalize_adapter.json"  # per stage adapter: name, method, parent, layering, metrics, complete
TRAIN_SECONDS = "train_seconds"  # the trainer's wall-clock time metric, in each adapter's meta["metrics"]

_VERSIONED = ("verticalize", "torch", "transformers", "peft", "accelerate", "bm25s", "jieba")


@dataclass(frozen=True)
class RunDir:
    """Paths of one run. ``RunDir("runs/x").stage("train")`` → ``runs/x/train``."""

    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    def stage(self, name: str) -> Path:
        if name not in STAGES:
            raise ValueError(f"unknown stage '{name}'; stages are {', '.join(STAGES)}")
        return self.root / name

    # The files each stage publishes (the contract between stages): writer → readers. Every file a stage reads
    # from another stage is named here; docs/architecture.md draws the same table.
    def manifest(self, name: str) -> Path:  # every stage → the pipeline's cache check, report, later stages
        return self.stage(name) / MANIFEST

    @property
    def config_file(self) -> Path:  # pipeline → eval, serve, export, report (the run's resolved config)
        return self.root / "config.yaml"

    @property
    def chunks(self) -> Path:  # ingest → kb, data
        return self.stage("ingest") / "chunks.jsonl"

    @property
    def kb_dir(self) -> Path:  # kb → data, eval, serve
        return self.stage("kb")

    def dataset_split(self, split: str) -> Path:  # data → train, eval, serve
        return self.stage("data") / f"{split}.jsonl"

    @property
    def labels(self) -> Path:  # data → train (copied into classification adapters), eval
        return self.stage("data") / "labels.json"

    @property
    def train_metrics(self) -> Path:  # train → report (loss curves)
        return self.stage("train") / "metrics.jsonl"

    @property
    def adapters_dir(self) -> Path:  # train → eval, serve, export (one sub-directory per stage adapter)
        return self.stage("train") / "adapters"

    def adapter_dir(self, name: str) -> Path:  # train → eval, serve, export; read them through read_adapters
        return self.adapters_dir / name

    def adapter_meta(self, name: str) -> Path:  # train → eval, serve, export, report
        return self.adapter_dir(name) / ADAPTER_META

    @property
    def ladder(self) -> Path:  # eval → report, plan, pipeline
        return self.stage("eval") / "ladder.json"

    def predictions(self, rung: str) -> Path:  # eval → report
        return self.stage("eval") / f"predictions_{rung}.jsonl"

    @property
    def general_probe(self) -> Path:  # eval → report: each model's answers to the forgetting probe
        return self.stage("eval") / "general_probe.jsonl"

    @property
    def report_html(self) -> Path:  # report → the user (pipeline result)
        return self.stage("report") / "report.html"

    @property
    def model_card(self) -> Path:  # report → the user
        return self.stage("report") / "model_card.md"

    def export_dir(self, to: str) -> Path:  # export → serve (gguf: serve.engine=llamacpp), the user
        return self.stage("export") / to

    @property
    def engine_cache(self) -> Path:  # eval, serve → eval, serve: the CPU engines' merged models (rebuildable),
        return self.root / "engine-cache"  # one folder per engine (openvino/: GGUFs, onnxruntime/: ONNX models)

    @property
    def feedback_db(self) -> Path:  # serve → serve (feedback export)
        return self.stage("feedback") / "feedback.sqlite"

    @property
    def feedback_seed(self) -> Path:  # serve (feedback export) → data (`verticalize run --iterate` seed data)
        return self.stage("feedback") / "seed.jsonl"

    @property
    def feedback_preferences(self) -> Path:  # serve (feedback export --preferences) → preference tuning
        return self.stage("feedback") / "preferences.jsonl"

    @property
    def feedback_ratings(self) -> Path:  # serve (feedback export --ratings) → preference tuning (task: kto)
        return self.stage("feedback") / "ratings.jsonl"

    @property
    def feedback_test(self) -> Path:  # pipeline (`run --iterate`) → eval: approved feedback held out of training
        return self.stage("iteration") / "feedback_test.jsonl"

    @property
    def feedback_eval(self) -> Path:  # pipeline (`run --iterate`) → report: both versions on feedback_test
        return self.stage("iteration") / "feedback_eval"

    @property
    def iteration_seed(self) -> Path:  # pipeline (`run --iterate`) → data (this version's feedback seed data)
        return self.stage("iteration") / "seed.jsonl"

    def ensure(self, name: str) -> Path:
        path = self.stage(name)
        path.mkdir(parents=True, exist_ok=True)
        return path


# --------------------------------------------------------------------------------------------- run versions
# `verticalize run --iterate` never retrains a run in place (a server may be reading its adapters): it writes the
# next version beside it. A run family is ``DIR/NAME`` (version 1) and ``DIR/NAME.v2``, ``DIR/NAME.v3``, ...
_VERSION_SUFFIX = ".v"


def run_family(root: str | Path) -> tuple[Path, str, int]:
    """(parent directory, family name, version) of a run directory: ``runs/x.v3`` → (runs, x, 3); ``runs/x`` → 1."""
    path = Path(root).resolve()
    name, sep, number = path.name.rpartition(_VERSION_SUFFIX)
    if sep and name and number.isdigit() and int(number) >= 2:
        return path.parent, name, int(number)
    return path.parent, path.name, 1


def run_version_dir(parent: Path, name: str, version: int) -> Path:
    return parent / (name if version == 1 else f"{name}{_VERSION_SUFFIX}{version}")


def run_versions(root: str | Path) -> list[tuple[int, Path]]:
    """Every existing version of ``root``'s family, oldest first."""
    parent, name, _ = run_family(root)
    found = [(1, parent / name)] if (parent / name).is_dir() else []
    if parent.is_dir():
        for d in parent.iterdir():
            p, n, v = run_family(d)
            if v > 1 and n == name and d.is_dir():
                found.append((v, d))
    return sorted(found)


def next_run_version(root: str | Path) -> Path:
    """The directory of the next version of ``root``'s family: one past the newest that exists."""
    parent, name, version = run_family(root)
    newest = max([version, *(v for v, _ in run_versions(root))])
    return run_version_dir(parent, name, newest + 1)


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def fingerprint(*parts: Any) -> str:
    """A stable hash of JSON-able parts (config sections, input fingerprints)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def file_fingerprint(path: str | Path) -> str:
    """Content hash of a file, or of every file under a directory (names and contents)."""
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p]
    for f in files:
        h.update(str(f.relative_to(p) if p.is_dir() else f.name).encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def write_manifest(stage_dir: str | Path, stage: str, *, inputs: dict[str, Any], config: dict[str, Any],
                   counts: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``manifest.json`` atomically and return it."""
    stage_dir = Path(stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "stage": stage,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "inputs": inputs,
        "config": config,
        "counts": counts,
        "versions": library_versions(),
        "fingerprint": fingerprint(stage, inputs, config),
        **(extra or {}),
    }
    write_json(stage_dir / MANIFEST, manifest)
    return manifest


def read_manifest(stage_dir: str | Path) -> dict[str, Any]:
    path = Path(stage_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"no manifest at {path}: run the stage that writes {Path(stage_dir).name} first")
    return json.loads(path.read_text(encoding="utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    """Atomic JSON write (temp file + rename) so an interrupted run never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Rows of a JSONL file we wrote ourselves (user files go through the data stage's tolerant readers)."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


# --------------------------------------------------------------------------------------------- trained adapters
class AdapterMetadataError(UserError, ValueError):
    """A stage adapter under RUN/train/adapters/ whose metadata is missing, unreadable or inconsistent; the
    message names the file."""


@dataclass(frozen=True)
class TrainedAdapter:
    """One stage of ``RUN/train/adapters/``, as the train stage recorded it in ``verticalize_adapter.json``."""

    name: str                                 # the directory name: the model name serve and export use
    path: Path
    meta: dict[str, Any] = field(repr=False)                     # the parsed verticalize_adapter.json
    ancestors: tuple["TrainedAdapter", ...] = field(repr=False)  # the stages it was trained on, root first
    final: bool = False                       # see read_adapters

    @property
    def method(self) -> str:
        return str(self.meta.get("method") or "lora")

    @property
    def is_full(self) -> bool:
        """A full fine-tune: the directory is a whole model, not a PEFT adapter."""
        return self.method == "full"

    @property
    def lineage(self) -> tuple["TrainedAdapter", ...]:
        """Ancestors, then this adapter: what has to be active to answer as this stage was trained."""
        return (*self.ancestors, self)

    @property
    def layered(self) -> bool:
        """Trained on the base with its parents merged in (LoRA family): served with its whole lineage on."""
        return self.meta.get("layering") == "merged-parents" and bool(self.ancestors)


def read_adapters(run: "RunDir | str | Path") -> list[TrainedAdapter]:
    """Every trained stage adapter of a run, in training order, each with its lineage; the final ones marked.

    One entry per sub-directory of ``RUN/train/adapters/`` that holds a complete stage (a stage whose metadata
    says ``"complete": false`` was interrupted and is left out). Metadata that is missing or not valid JSON, a PEFT
    stage without ``adapter_config.json``, or a ``parent`` that is not among the stages raises
    `AdapterMetadataError` naming the file. No adapters directory: an empty list.

    Training order is the order of ``train.stages`` as the train manifest recorded it (``RUN/train/manifest.json``,
    ``stages``); adapters the manifest does not list (hand-made, left by an earlier training, or no manifest yet)
    come first, parents before children, then by the ``created`` time in their metadata, then by name.

    **Final** is defined per kind, because the ladder measures both: ``final`` is set on the *last PEFT adapter*
    in training order (the adapter eval's peft rungs use and export exports by default) and on the *last full
    fine-tune* in training order (eval's full rung). With layered stages the last stage is the one trained on top
    of all the others, so it is the run's result. Serve loads every PEFT adapter, by name.
    """
    run = run if isinstance(run, RunDir) else RunDir(run)
    root = run.adapters_dir
    if not root.is_dir():
        return []
    metas: dict[str, tuple[Path, dict[str, Any]]] = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        meta = _read_adapter_meta(d)
        if meta is not None:
            metas[d.name] = (d / ADAPTER_META, meta)
    chains = {name: _ancestors(name, metas, root) for name in metas}
    order = _train_stage_order(run)
    ranked = sorted(metas, key=lambda n: (order.index(n) if n in order else -1, len(chains[n]),
                                          str(metas[n][1].get("created", "")), n))
    finals = _final_names(ranked, {n: meta for n, (_, meta) in metas.items()})
    built: dict[str, TrainedAdapter] = {}
    for name in sorted(metas, key=lambda n: len(chains[n])):  # parents before children
        built[name] = TrainedAdapter(name, metas[name][0].parent, metas[name][1],
                                     tuple(built[a] for a in chains[name]), final=name in finals)
    return [built[n] for n in ranked]


def read_adapter_meta(adapter_dir: str | Path, *, required: bool = False) -> dict[str, Any] | None:
    """The one reader of an adapter's ``verticalize_adapter.json``: the parsed object, or None when the file does
    not exist (a directory not written by ``verticalize train``; ``required``: `AdapterMetadataError`). A file that
    cannot be read, is not valid JSON or is not a JSON object raises `AdapterMetadataError` naming it."""
    d = Path(adapter_dir)
    meta_path = d / ADAPTER_META
    if not meta_path.is_file():
        if not required:
            return None
        raise AdapterMetadataError(f"{meta_path} is missing: {d} is not a stage adapter written by `verticalize "
                                   "train`; train again or remove the directory")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise AdapterMetadataError(f"{meta_path} cannot be read ({e}); train again or remove {d}") from None
    if not isinstance(meta, dict):
        raise AdapterMetadataError(f"{meta_path} is not a JSON object; train again or remove {d}")
    return meta


def _read_adapter_meta(d: Path) -> dict[str, Any] | None:
    """The metadata of the stage adapter in ``d``; None for an interrupted stage (``"complete": false``)."""
    meta = read_adapter_meta(d, required=True)
    assert meta is not None
    if meta.get("complete") is False:  # an interrupted stage is not a result
        return None
    if meta.get("method") != "full" and not (d / "adapter_config.json").is_file():
        raise AdapterMetadataError(f"{d / ADAPTER_META} describes a PEFT adapter, but {d} has no "
                                   "adapter_config.json; train again or remove the directory")
    return meta


def _ancestors(name: str, metas: dict[str, tuple[Path, dict[str, Any]]], root: Path) -> list[str]:
    """The stages ``name`` was trained on, root first, following ``parent``; a missing parent or a loop raises."""
    out: list[str] = []
    meta_path, meta = metas[name]
    parent = meta.get("parent")
    while parent:
        if parent not in metas:
            raise AdapterMetadataError(f"{meta_path} names parent stage '{parent}', which has no complete "
                                       f"adapter under {root}; train again")
        if parent == name or parent in out:
            raise AdapterMetadataError(f"{meta_path}: the lineage of '{name}' loops at '{parent}'")
        out.insert(0, parent)
        parent = metas[parent][1].get("parent")
    return out


def _final_names(ranked: list[str], metas: dict[str, dict[str, Any]]) -> set[str]:
    """The last PEFT adapter and the last full fine-tune of ``ranked`` (training order), those that exist."""
    is_full = {n: metas[n].get("method") == "full" for n in ranked}
    return {kind[-1] for kind in ([n for n in ranked if not is_full[n]], [n for n in ranked if is_full[n]]) if kind}


def final_adapter(adapters: Iterable[TrainedAdapter], *, full: bool = False) -> TrainedAdapter | None:
    """The final PEFT adapter (``full=True``: the final full fine-tune) of ``read_adapters``' result, or None."""
    return next((a for a in adapters if a.final and a.is_full == full), None)


def _train_stage_order(run: RunDir) -> list[str]:
    """Stage names in training order from the train manifest; [] when there is none (or it is unreadable)."""
    try:
        manifest = json.loads(run.manifest("train").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(manifest, dict):
        return []
    # Run directories written before the manifest recorded "stages": its inputs are {stage: data}, in order.
    stages = manifest.get("stages") or list(manifest.get("inputs") or {})
    return [str(s) for s in stages]
