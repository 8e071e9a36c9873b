"""The main job: ingest → knowledge base → dataset → train → evaluate → report, as one resumable run.

Each stage is called through its package's public function and writes its own artifact. A stage is skipped on a
rerun when its *key* — a fingerprint of its config section, its input files and the keys of the stages it reads
— is the one recorded in ``RUN/pipeline.json`` and its manifest is still there. So changing ``train.lora.r``
re-trains and re-evaluates but does not re-ingest; editing a document redoes everything downstream of it.
"""

from __future__ import annotations

import glob
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from verticalize import data, evaluate, ingest, kb, train
from verticalize.artifacts import RunDir, file_fingerprint, fingerprint, write_json
from verticalize.config import Config


@dataclass
class StageOutcome:
    name: str
    status: str  # "ran" | "cached" | "skipped"
    seconds: float = 0.0
    note: str = ""


@dataclass
class PipelineResult:
    run_dir: Path
    stages: list[StageOutcome] = field(default_factory=list)
    ladder: dict[str, Any] | None = None
    report: Path | None = None


def _input_files(patterns: list[str]) -> list[Path]:
    found: list[Path] = []
    for pattern in patterns:
        p = Path(pattern)
        if p.is_dir() or p.is_file():
            found.append(p)
        else:
            found.extend(Path(x) for x in sorted(glob.glob(pattern, recursive=True)))
    return found


def _fingerprint_inputs(patterns: list[str]) -> dict[str, str]:
    return {str(p): file_fingerprint(p) for p in _input_files(patterns)}


class Pipeline:
    """Runs the stages in order with caching; ``progress`` receives (stage, status) for display."""

    def __init__(self, cfg: Config, *, force: bool = False, strict: bool = False, test_set: str | None = None,
                 progress: Callable[[str, str], None] | None = None):
        self.cfg = cfg
        self.run = RunDir(cfg.project.run_dir)
        self.force = force
        self.strict = strict
        self.test_set = test_set or cfg.project.test_set
        # The data stage decontaminates training data against the test set, so it must see the override too.
        cfg.project.test_set = self.test_set
        self.progress = progress or (lambda stage, status: None)
        self.state_path = self.run.root / "pipeline.json"
        self.state: dict[str, str] = (json.loads(self.state_path.read_text(encoding="utf-8"))
                                      if self.state_path.is_file() else {})
        self.keys: dict[str, str] = {}

    # ----------------------------------------------------------------------------------------- stage keys
    def _key(self, stage: str) -> str:
        c = self.cfg
        if stage == "ingest":
            return fingerprint(c.ingest.model_dump(mode="json"), _fingerprint_inputs(c.project.docs))
        if stage == "kb":
            return fingerprint(c.kb.index_settings(), self.keys.get("ingest"))  # not top_k/index_workers
        if stage == "data":
            return fingerprint(c.data.model_dump(mode="json"), c.project.seed, c.project.system_prompt,
                               _fingerprint_inputs(c.project.seed_data),
                               _fingerprint_inputs([self.test_set] if self.test_set else []),
                               self.keys.get("ingest"), self.keys.get("kb"))
        if stage == "train":
            return fingerprint(c.train.model_dump(mode="json"), c.model.model_dump(mode="json"),
                               c.project.seed, c.project.system_prompt, self.keys.get("data"))
        if stage == "eval":
            return fingerprint(c.eval.model_dump(mode="json"), c.requirements.model_dump(mode="json"),
                               c.kb.top_k, _fingerprint_inputs([self.test_set] if self.test_set else []),
                               self.keys.get("train"), self.keys.get("kb"), self.keys.get("data"))
        if stage == "report":
            return fingerprint(self.keys.get("eval"), self.keys.get("train"), self.keys.get("data"))
        raise ValueError(stage)

    def _cached(self, stage: str, artifact: Path) -> bool:
        return (not self.force and self.state.get(stage) == self.keys[stage] and artifact.exists())

    def _record(self, stage: str) -> None:
        self.state[stage] = self.keys[stage]
        write_json(self.state_path, self.state)

    # ----------------------------------------------------------------------------------------- stages
    def _stage(self, result: PipelineResult, stage: str, artifact: Path, fn: Callable[[], Any]) -> None:
        self.keys[stage] = self._key(stage)
        if self._cached(stage, artifact):
            self.progress(stage, "cached")
            result.stages.append(StageOutcome(stage, "cached"))
            return
        self.progress(stage, "running")
        started = time.perf_counter()
        # A stage that runs invalidates everything after it: forget their keys before running.
        order = ["ingest", "kb", "data", "train", "eval", "report"]
        for later in order[order.index(stage):]:
            self.state.pop(later, None)
        fn()
        self._record(stage)
        seconds = time.perf_counter() - started
        self.progress(stage, f"done in {seconds:.1f}s")
        result.stages.append(StageOutcome(stage, "ran", seconds))

    def execute(self) -> PipelineResult:
        cfg, run = self.cfg, self.run
        run.root.mkdir(parents=True, exist_ok=True)
        # The resolved config travels with the run: later commands on RUN (eval, serve, export) read it.
        run.config_file.write_text(cfg.to_yaml(), encoding="utf-8")
        result = PipelineResult(run.root)
        has_docs = bool(cfg.project.docs)
        if has_docs:
            self._stage(result, "ingest", run.manifest("ingest"),
                        lambda: ingest.ingest(cfg.project.docs, run.ensure("ingest"), cfg.ingest,
                                              strict=self.strict))
            self._stage(result, "kb", run.manifest("kb"),
                        lambda: kb.build_kb(run.chunks, run.ensure("kb"), cfg.kb))
        else:
            result.stages += [StageOutcome("ingest", "skipped", note="no project.docs"),
                              StageOutcome("kb", "skipped", note="no documents")]
        self._stage(result, "data", run.manifest("data"),
                    lambda: data.build_dataset(cfg, run, strict=self.strict))
        self._stage(result, "train", run.manifest("train"), lambda: train.train(cfg, run))
        test_set = Path(self.test_set) if self.test_set else None
        self._stage(result, "eval", run.ladder,
                    lambda: evaluate.evaluate_run(cfg, run, test_set=test_set))
        self._stage(result, "report", run.report_html, lambda: evaluate.write_report(run))
        result.ladder = json.loads(run.ladder.read_text(encoding="utf-8")) if run.ladder.is_file() else None
        result.report = run.report_html if run.report_html.is_file() else None
        return result


def run_pipeline(cfg: Config, **kwargs: Any) -> PipelineResult:
    return Pipeline(cfg, **kwargs).execute()
