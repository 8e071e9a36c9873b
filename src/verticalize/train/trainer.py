"""The train stage: layered stages in order, each on top of the stages before it, then the run artifacts.

Stages (``train.stages``) train in order and are saved under their own names with ``parent`` = the stage before.
LoRA-family stages train a new adapter on the base with every earlier adapter merged in; prefix/prompt and full
stages continue from the parent (see ``methods.build_model``; ``layering`` in verticalize_adapter.json says which).
No stages configured = one stage named ``task`` on the dataset. With ``resume``, stages whose adapter is complete
(same fingerprint) are skipped and an interrupted stage continues from its last checkpoint.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from verticalize.artifacts import (ADAPTER_META, RunDir, file_fingerprint, fingerprint, read_adapter_meta,
                                   write_manifest)
from verticalize.config import Config
from verticalize.methods import get as get_method
from verticalize.plan import DoesNotFitError, check_fits
from verticalize.train.data import (ChatEncoder, DatasetFileError, Example, TrainError, holdout_split,
                                    load_chat_examples, load_text_examples)
from verticalize.train.loop import StageRun, StepCallback, run_stage
from verticalize.train.methods import build_model, check_method_supported, layering, n_virtual_tokens, \
    resolve_precision, save_trained
from verticalize.train.preference import PREFERENCE_TASKS, train_preference_stage
from verticalize.train.report import MetricsLog, plot_loss_curve, write_adapter_meta

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StagePlan:
    name: str
    task: str  # sft | pretrain | classification | dpo | kto
    data: str  # dataset | corpus | preferences | ratings | a path
    epochs: float
    learning_rate: float
    parent: str | None
    ancestors: tuple[str, ...] = ()  # every earlier stage, root first


def plan_stages(cfg: Config) -> list[StagePlan]:
    t = cfg.train
    if not t.stages:
        task = "classification" if cfg.data.task == "classification" else "sft"
        return [StagePlan("task", task, "dataset", t.epochs, t.learning_rate, None)]
    names = [s.name for s in t.stages]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise TrainError(f"train.stages: stage names must be unique, '{sorted(dup)[0]}' appears twice")
    for n in names:
        if not n or "/" in n or n.startswith("."):
            raise TrainError(f"train.stages: '{n}' is not usable as a directory name")
    plans: list[StagePlan] = []
    for s in t.stages:
        before = tuple(p.name for p in plans)
        plans.append(StagePlan(s.name, s.task, s.data, s.epochs or t.epochs, s.learning_rate or t.learning_rate,
                               before[-1] if before else None, before))
    return plans


def _stage_files(plan: StagePlan, run: RunDir) -> tuple[Path, Path | None]:
    """(training file, validation file or None = hold out part of the training file)."""
    if plan.data == "dataset":
        train = run.dataset_split("train")
        if not train.is_file():
            raise DatasetFileError(f"no training data at {train}: run `verticalize data` first (stage "
                                   f"'{plan.name}' uses data=dataset)")
        val = run.dataset_split("validation")
        return train, val if val.is_file() else None
    if plan.data == "preferences":
        if not run.feedback_preferences.is_file():
            raise DatasetFileError(f"no preference pairs at {run.feedback_preferences}: run `verticalize feedback "
                                   f"export RUN --preferences` first (stage '{plan.name}' uses data=preferences)")
        return run.feedback_preferences, None
    if plan.data == "ratings":
        if not run.feedback_ratings.is_file():
            raise DatasetFileError(f"no ratings at {run.feedback_ratings}: run `verticalize feedback export RUN "
                                   f"--ratings` first (stage '{plan.name}' uses data=ratings)")
        return run.feedback_ratings, None
    if plan.data == "corpus":
        if not run.chunks.is_file():
            raise DatasetFileError(f"no corpus at {run.chunks}: run `verticalize ingest` first (stage "
                                   f"'{plan.name}' uses data=corpus)")
        return run.chunks, None
    path = Path(plan.data).expanduser()
    if not path.is_file():
        raise DatasetFileError(f"stage '{plan.name}': data file {path} not found")
    return path, None


def _load_stage_data(plan: StagePlan, run: RunDir, encoder: ChatEncoder) -> tuple[list[Example], list[Example],
                                                                                  list[dict[str, Any]]]:
    train_path, val_path = _stage_files(plan, run)
    if plan.task == "pretrain":
        def load(p: Path) -> tuple[list[Example], Any]:
            return load_text_examples(p, encoder)
    else:
        def load(p: Path) -> tuple[list[Example], Any]:
            return load_chat_examples(p, encoder, plan.task)
    train, rep = load(train_path)
    reports = [rep.to_dict()]
    if not train:
        why = "; ".join(rep.refused[:3]) or (f"all {rep.other_task} rows are for another task form"
                                              if rep.other_task else "the file is empty")
        raise TrainError(f"stage '{plan.name}': no usable training examples in {train_path} ({why})")
    if val_path is not None:
        val, vrep = load(val_path)
        reports.append(vrep.to_dict())
    else:
        train, val = holdout_split(train)
    return train, val, reports


def _check_fits(cfg: Config) -> dict[str, Any] | None:
    """The planner's memory check; its refusal says what to change."""
    try:
        estimate = check_fits(cfg)
    except DoesNotFitError as e:
        raise TrainError(f"this training setting does not fit: {e}") from e
    except Exception as e:  # an estimate we cannot make must not block training; the loader reports bad bases
        return {"unavailable": f"{type(e).__name__}: {e}"}
    if estimate.get("warning"):
        logger.warning("memory: %s", estimate["warning"])
    return estimate


def _stage_fingerprint(cfg: Config, plan: StagePlan, run: RunDir) -> str:
    train_path, val_path = _stage_files(plan, run)
    files = [file_fingerprint(p) for p in (train_path, val_path) if p is not None]
    train_cfg = cfg.train.model_dump(mode="json", exclude={"stages", "save_every", "device_memory_gb"})
    return fingerprint(plan.__dict__, train_cfg, cfg.model.model_dump(mode="json"), cfg.project.seed,
                       cfg.project.system_prompt, files)


def _make_accelerator() -> Any:
    """One Accelerator per process (its state is a process-wide singleton), so mixed precision is not set here:
    the loop applies autocast itself (see Precision), which lets stages and runs in one process differ."""
    from accelerate import Accelerator
    return Accelerator(cpu=not torch.cuda.is_available())


def train(cfg: Config, run: RunDir, resume: bool = False, on_step: StepCallback | None = None) -> dict[str, Any]:
    """Train every stage; returns a summary (per stage: adapter dir, parameters, metrics)."""
    from transformers import set_seed

    run = RunDir(run.root if isinstance(run, RunDir) else run)
    plans = plan_stages(cfg)
    for plan in plans:
        _stage_files(plan, run)  # every input present before anything heavy starts
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    check_method_supported(cfg.train, device)
    precision = resolve_precision(cfg.train, device)
    estimate = _check_fits(cfg)
    acc = _make_accelerator()
    out_dir = run.ensure("train")
    log = MetricsLog(run.train_metrics, enabled=acc.is_main_process)
    if acc.is_main_process and not resume:
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
        run.train_metrics.unlink(missing_ok=True)
    acc.wait_for_everyone()

    summary: dict[str, Any] = {"stages": [], "precision": precision.name, "world_size": acc.num_processes,
                               "estimate": estimate}
    for plan in plans:
        summary["stages"].append(_train_stage(cfg, run, plan, precision, acc, log, resume, on_step, set_seed))
        acc.free_memory()
    if acc.is_main_process:
        plot_loss_curve(run.train_metrics, out_dir / "loss_curve.png")
        (out_dir / "config.yaml").write_text(cfg.to_yaml(), encoding="utf-8")
        write_manifest(out_dir, "train", inputs={p.name: p.data for p in plans}, config=cfg.to_dict(),
                       counts={s["name"]: s["metrics"].get("steps") for s in summary["stages"]},
                       extra={"stages": [p.name for p in plans], "summary": summary})  # read_adapters' order
    acc.wait_for_everyone()
    return summary


def _validation_sample(val: list[Any], limit: int | None) -> list[Any]:
    """At most ``limit`` validation examples, a stable choice by id hash: validation loss is computed several
    times per stage, and on a CPU a large validation split can cost more than the training it steers."""
    if not limit or len(val) <= limit:
        return val
    import hashlib

    return sorted(val, key=lambda e: hashlib.sha256(e.id.encode()).hexdigest())[:limit]


def _train_stage(cfg: Config, run: RunDir, plan: StagePlan, precision: Any, acc: Any, log: MetricsLog,
                 resume: bool, on_step: StepCallback | None, set_seed: Any) -> dict[str, Any]:
    adapter_dir = run.adapter_dir(plan.name)
    fp = _stage_fingerprint(cfg, plan, run)
    done = read_adapter_meta(adapter_dir) if resume else None
    if done and done.get("complete") and done.get("fingerprint") == fp:
        return {**done, "path": str(adapter_dir)}  # the same shape as a stage trained now
    set_seed(cfg.project.seed)
    parents = [run.adapter_dir(name) for name in plan.ancestors]
    for p in parents:
        if not (p / ADAPTER_META).is_file():
            raise TrainError(f"stage '{plan.name}' builds on '{p.name}', whose adapter is missing in {p}")
    model, tok, counts = build_model(cfg, precision, acc.device, parents=parents)
    ckpt_dir = run.stage("train") / "checkpoints" / plan.name
    if plan.task in PREFERENCE_TASKS:
        metrics, packing, reports = _train_preference(cfg, run, plan, model, tok, counts, precision, acc, fp,
                                                      resume, on_step, ckpt_dir)
    else:
        metrics, packing, reports = _train_sft(cfg, run, plan, model, tok, counts, precision, acc, log, fp, resume,
                                               on_step, ckpt_dir)
    meta = {"name": plan.name, "method": cfg.train.method, "task": plan.task, "parent": plan.parent,
            "base": cfg.model.base, **counts, "metrics": metrics, "data": plan.data, "inputs": reports,
            "layering": layering(cfg.train.method) if plan.parent else None,
            "packing": packing, "precision": precision.name, "world_size": acc.num_processes,
            "system_prompt": cfg.project.system_prompt, "fingerprint": fp,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "complete": True}
    if acc.is_main_process:
        shutil.rmtree(adapter_dir, ignore_errors=True)
        save_trained(acc.unwrap_model(model), tok, adapter_dir, cfg.train.method)
        labels = run.labels
        if plan.task == "classification" and labels.is_file():
            shutil.copy(labels, adapter_dir / labels.name)
            meta["labels"] = json.loads(labels.read_text(encoding="utf-8"))
        (adapter_dir / "verticalize_config.yaml").write_text(cfg.to_yaml(), encoding="utf-8")
        write_adapter_meta(adapter_dir, meta)
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        for leftover in ckpt_dir.parent.glob(f"{plan.name}.best.safetensors*"):
            leftover.unlink()
    acc.wait_for_everyone()
    return {**meta, "path": str(adapter_dir)}


def _train_sft(cfg: Config, run: RunDir, plan: StagePlan, model: Any, tok: Any, counts: dict[str, Any],
               precision: Any, acc: Any, log: MetricsLog, fp: str, resume: bool, on_step: StepCallback | None,
               ckpt_dir: Path) -> tuple[dict[str, Any], bool, list[dict[str, Any]]]:
    """The hand-written loop (sft, pretrain, classification): (metrics, packing, data reports)."""
    encoder = ChatEncoder(tok, cfg.project.system_prompt, cfg.model.max_seq_len, cfg.train.assistant_only_loss)
    train_ex, val_ex, reports = _load_stage_data(plan, run, encoder)
    if acc.is_main_process:
        share = 100 * counts["trainable_share"]
        print(f"stage '{plan.name}' ({cfg.train.method}, {plan.task}): {counts['trainable_params']:,} trainable "
              f"of {counts['total_params']:,} parameters ({share:.3f}%); {len(train_ex)} train / {len(val_ex)} "
              f"validation examples; precision {precision.name}; {acc.num_processes} process(es)")
    stage = StageRun(name=plan.name, train=train_ex, val=_validation_sample(val_ex, cfg.train.max_val_examples),
                     epochs=plan.epochs, learning_rate=plan.learning_rate,
                     packing=cfg.train.packing and get_method(cfg.train.method).packs,
                     n_virtual=n_virtual_tokens(model), pad_id=tok.pad_token_id, ckpt_dir=ckpt_dir, log=log,
                     fingerprint=fp, resume=resume, on_step=on_step)
    return run_stage(stage, model, cfg, acc, precision), stage.packing, reports


def _train_preference(cfg: Config, run: RunDir, plan: StagePlan, model: Any, tok: Any, counts: dict[str, Any],
                      precision: Any, acc: Any, fp: str, resume: bool, on_step: StepCallback | None,
                      ckpt_dir: Path) -> tuple[dict[str, Any], bool, list[dict[str, Any]]]:
    """A preference-tuning stage (dpo, kto) through TRL (train/preference.py): (metrics, packing, data reports)."""
    if not get_method(cfg.train.method).merges or not plan.parent:
        raise TrainError(f"stage '{plan.name}' (task: {plan.task}) needs an earlier stage to tune and a LoRA-family "
                         f"method (train.method={cfg.train.method}): put an sft stage before it")
    if acc.num_processes > 1:
        raise TrainError(f"stage '{plan.name}' (task: {plan.task}) trains in one process; run it without torchrun")
    data_path, _ = _stage_files(plan, run)
    if acc.is_main_process:
        print(f"stage '{plan.name}' ({cfg.train.method}, {plan.task} on top of '{plan.parent}'): "
              f"{counts['trainable_params']:,} trainable parameters; rows from {data_path}; "
              f"precision {precision.name}")
    metrics, report = train_preference_stage(cfg, model, tok, data_path, task=plan.task, name=plan.name,
                                             epochs=plan.epochs, learning_rate=plan.learning_rate,
                                             precision=precision, work_dir=ckpt_dir, fingerprint=fp, resume=resume,
                                             on_step=on_step)
    return metrics, False, [report]
