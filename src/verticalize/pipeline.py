"""The main job: ingest → knowledge base → dataset → train → evaluate → report, as one resumable run.

Each stage is called through its package's public function and writes its own artifact. A stage is skipped on a
rerun when its *key* — a fingerprint of its config section, its input files and the keys of the stages it reads
— is the one recorded in ``RUN/pipeline.json`` and its manifest is still there. So changing ``train.lora.r``
re-trains and re-evaluates but does not re-ingest; editing a document redoes everything downstream of it.
"""

from __future__ import annotations

import glob
import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from verticalize import data, evaluate, ingest, kb, train
from verticalize.artifacts import (RunDir, file_fingerprint, fingerprint, next_run_version, run_family, run_versions,
                                   write_json, write_jsonl)
from verticalize.config import Config
from verticalize.errors import UserError
from verticalize.serve.feedback import FeedbackStore, preference_pairs, rated_answers, seed_examples
from verticalize.testsets import read_test_file


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


# --------------------------------------------------------------------------------------------- iterations
# `verticalize run --iterate` retrains on reviewed feedback into a NEW version of the run (RUN.v2, RUN.v3, ... beside
# RUN; see artifacts.run_family): the served version is never retrained, rewritten or deleted. The new version
# starts with copies of the source's ingest/ and kb/ (and their pipeline keys, so they stay cached while the
# documents and their settings are unchanged), and gets the approved feedback of the whole lineage as seed data.
REUSED_STAGES = ("ingest", "kb")


@dataclass
class Iteration:
    source: RunDir
    target: RunDir
    version: int
    counts: dict[str, int]
    resumed: bool = False


def _iteration_info(run: RunDir) -> dict[str, Any] | None:
    path = run.manifest("iteration")
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _complete(run: RunDir) -> bool:
    info = _iteration_info(run)
    return run.manifest("train").is_file() and (info is None or bool(info.get("complete")))


def iteration_source(run_dir: str | Path) -> RunDir:
    """The version an iteration starts from: the newest complete version of ``run_dir``'s family."""
    versions = run_versions(run_dir)
    if not versions:
        raise UserError(f"--iterate: no run at {run_dir}; run `verticalize run` (and serve it) first")
    complete = [path for _, path in versions if _complete(RunDir(path))]
    return RunDir(complete[-1] if complete else versions[0][1])


def lineage(run: RunDir) -> list[RunDir]:
    """``run`` and the versions it was iterated from, newest first."""
    out, seen = [run], {run.root.resolve()}
    while (info := _iteration_info(out[-1])) and info.get("source"):
        src = RunDir(info["source"])
        if src.root.resolve() in seen or not src.root.is_dir():
            break
        seen.add(src.root.resolve())
        out.append(src)
    return out


def approved_feedback(runs: list[RunDir], *, min_rating: int = 1) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The seed examples of the approved feedback in every store of ``runs`` (newest first; one example per
    response, the newest store's winning), and the summed counts."""
    merged: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}
    stores = [r.feedback_db for r in runs if r.feedback_db.is_file()]
    if not stores:
        raise UserError(f"--iterate: no feedback store in {', '.join(str(r.root) for r in runs)}; serve the run, "
                        f"collect feedback and review it (`verticalize feedback review RUN`) first")
    for db in reversed(stores):  # oldest first: a newer store's example replaces an older one's
        examples, c = seed_examples(FeedbackStore(db), min_rating=min_rating)
        merged.update({ex["id"]: ex for ex in examples})
        for k, v in c.items():
            counts[k] = counts.get(k, 0) + v
    counts["exported"] = len(merged)
    return list(merged.values()), counts


def approved_preferences(runs: list[RunDir], exclude_questions: list[str],
                         threshold: float) -> tuple[list[dict[str, Any]], int]:
    """The preference pairs of the approved feedback in every store of ``runs`` (one pair per id, the newest
    store's winning), questions duplicating a test question (``threshold``: data.decontaminate_threshold) left
    out; and how many pairs there are."""
    return _merged_over_stores(runs, preference_pairs, exclude_questions, threshold)


def approved_ratings(runs: list[RunDir], exclude_questions: list[str],
                     threshold: float) -> tuple[list[dict[str, Any]], int]:
    """The unpaired ratings (for a kto stage) of the approved feedback in every store of ``runs``, as above."""
    return _merged_over_stores(runs, rated_answers, exclude_questions, threshold)


def _merged_over_stores(runs: list[RunDir], read: Any, exclude_questions: list[str],
                        threshold: float) -> tuple[list[dict[str, Any]], int]:
    merged: dict[str, dict[str, Any]] = {}
    for db in reversed([r.feedback_db for r in runs if r.feedback_db.is_file()]):
        rows, _ = read(FeedbackStore(db), exclude_questions=exclude_questions, run=str(db.parent.parent.resolve()),
                       decontaminate_threshold=threshold)
        merged.update({r["id"]: r for r in rows})
    return list(merged.values()), len(merged)


def _test_questions(cfg: Config, run: RunDir) -> list[str]:
    """The questions the new version will be tested on: ``project.test_set`` when set (it replaces the test split),
    else the source version's test split."""
    path = Path(cfg.project.test_set) if cfg.project.test_set else run.dataset_split("test")
    if not path.is_file():
        return []
    return [r.parsed.question for r in read_test_file(path).rows if r.parsed is not None]


def hold_out_feedback(examples: list[dict[str, Any]], share: float) -> tuple[list[dict[str, Any]],
                                                                              list[dict[str, Any]]]:
    """(trained, held out): ``share`` of the corrected questions, a stable choice by question (at least one when
    the share is positive and there are two or more), never all of them."""
    corrected = sorted({_question_key(ex) for ex in examples if ex["meta"].get("generator") == "seed:feedback"
                        and ex["meta"].get("answer")}, key=_hash_key)
    if share <= 0 or len(corrected) < 2:
        return examples, []
    held = set(corrected[:min(len(corrected) - 1, max(1, round(share * len(corrected))))])
    return ([ex for ex in examples if _question_key(ex) not in held],
            [ex for ex in examples if _question_key(ex) in held])


def _question_key(example: dict[str, Any]) -> str:
    return " ".join(str(example["meta"].get("question") or "").lower().split())


def _hash_key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def prepare_iteration(cfg: Config) -> tuple[Config, Iteration]:
    """Create (or resume) the next version of ``cfg.project.run_dir``'s family; returns the config that trains it
    (its run_dir the new version, the approved feedback added to ``project.seed_data``) and what was done."""
    source = iteration_source(cfg.project.run_dir)
    examples, counts = approved_feedback(lineage(source))
    if not examples:
        raise UserError(f"--iterate: no approved feedback for {source.root} ({counts.get('pending', 0)} pending, "
                        f"{counts.get('rejected', 0)} rejected); review it with `verticalize feedback review "
                        f"{source.root}` first")
    newest = RunDir(run_versions(source.root)[-1][1])
    info = _iteration_info(newest)
    resumed = bool(newest.root != source.root and info and not info.get("complete")
                   and Path(info.get("source", "")) == source.root.resolve())
    target = newest if resumed else RunDir(next_run_version(source.root))
    target.root.mkdir(parents=True, exist_ok=True)
    source_state = (json.loads((source.root / "pipeline.json").read_text(encoding="utf-8"))
                    if (source.root / "pipeline.json").is_file() else {})
    state_path = target.root / "pipeline.json"
    state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.is_file() else {}
    for stage in REUSED_STAGES:  # copies, never links: a rerun in the new version must not write into the old
        if stage in source_state and source.manifest(stage).is_file() and not target.stage(stage).exists():
            shutil.copytree(source.stage(stage), target.stage(stage))
            state.setdefault(stage, source_state[stage])
    write_json(state_path, state)
    examples, held_out = hold_out_feedback(examples, cfg.eval.feedback_holdout)
    counts["held_out"] = len(held_out)
    write_jsonl(target.iteration_seed, examples)
    write_jsonl(target.feedback_test, [{"question": ex["meta"]["question"], "answer": ex["meta"]["answer"],
                                        "feedback_id": ex["meta"]["feedback_id"]} for ex in held_out])
    # The same feedback as preference pairs (a `task: dpo, data: preferences` stage of this version) and as
    # unpaired ratings (`task: kto, data: ratings`); the held-out questions stay out of these too.
    tested = _test_questions(cfg, source) + [ex["meta"]["question"] for ex in held_out]
    threshold = cfg.data.decontaminate_threshold
    preferences, counts["preference_pairs"] = approved_preferences(lineage(source), tested, threshold)
    write_jsonl(target.feedback_preferences, preferences)
    ratings, counts["rated_answers"] = approved_ratings(lineage(source), tested, threshold)
    write_jsonl(target.feedback_ratings, ratings)
    version = run_family(target.root)[2]
    write_json(target.manifest("iteration"), {
        "stage": "iteration", "source": str(source.root.resolve()), "version": version,
        "lineage": [str(r.root.resolve()) for r in lineage(source)], "counts": counts, "created": time.time(),
        "complete": False})
    cfg = cfg.model_copy(deep=True)
    cfg.project.run_dir = str(target.root)
    cfg.project.seed_data = [*cfg.project.seed_data, str(target.iteration_seed)]
    return cfg, Iteration(source, target, version, counts, resumed)


def run_iteration(cfg: Config, **kwargs: Any) -> tuple[PipelineResult, Iteration]:
    """`verticalize run --iterate`: the next version of the run, trained with the approved feedback; with
    held-out feedback questions (eval.feedback_holdout), both versions answer them and the report compares."""
    cfg, it = prepare_iteration(cfg)
    result = run_pipeline(cfg, **kwargs)
    info = _iteration_info(it.target) or {}
    if it.counts.get("held_out") and it.target.ladder.is_file():  # evaluated: the held-out questions too
        info["feedback_comparison"] = str(compare_on_held_out_feedback(cfg, it))
        evaluate.write_report(it.target)  # again, with the comparison
    write_json(it.target.manifest("iteration"), {**info, "complete": True, "finished": time.time()})
    return result, it


def compare_on_held_out_feedback(cfg: Config, it: Iteration) -> Path:
    """Both versions answer the feedback questions held out of training (side ladders under
    RUN.vN/iteration/feedback_eval/, the source version's files untouched); returns the comparison's path."""
    from verticalize.evaluate.compare import compare_ladders
    from verticalize.serve import load_run_config

    out = it.target.feedback_eval
    source_cfg = load_run_config(it.source)
    source_cfg.eval = cfg.eval.model_copy(deep=True)  # the same rungs and settings for both versions
    ladders = {name: evaluate.evaluate_run(c, run, test_set=it.target.feedback_test, out_dir=out / name)
               for name, c, run in (("source", source_cfg, it.source), ("this", cfg, it.target))}
    comparison = {"a": str(it.source.root), "b": str(it.target.root), "questions": it.counts["held_out"],
                  **compare_ladders(ladders["source"], ladders["this"])}
    path = out / "comparison.json"
    write_json(path, comparison)
    return path
