"""Preference tuning (DPO, KTO) as a layered stage, through TRL's ``DPOTrainer`` and ``KTOTrainer``.

A stage ``{name: prefs, task: dpo, data: preferences}`` in ``train.stages`` trains on the preference pairs of the
reviewed feedback (``verticalize feedback export RUN --preferences`` → ``RUN/feedback/preferences.jsonl``; or any
JSONL of ``{"prompt": [messages], "chosen": str, "rejected": str}``). A ``task: kto`` stage trains on unpaired
ratings — ``{"prompt", "completion", "label": true|false}`` (``feedback export RUN --ratings`` →
``RUN/feedback/ratings.jsonl``, ``data: ratings``) — or on pairs, each read as one desirable and one undesirable
answer. KTO is what uses the answers DPO cannot: a thumbs-down without a correction, a thumbs-up without a corrected
sibling.

Both are layered like every LoRA-family stage: the earlier stages are merged into the base and a fresh adapter is
trained, so the reference model — the adapter switched off — is exactly the model the earlier stages made (TRL
uses the PEFT model with its adapter disabled as the reference when no reference model is given). The prompt is
formed as the SFT stages form it: the project's system prompt, then the conversation.

What the SFT loop guarantees and how a preference stage keeps it:
- precision: bf16/fp16 where the device has it (TRL's mixed precision), fp32 otherwise — the stage's ``precision``;
- schedule: warm-up + cosine; steps are the stage's epochs over its rows, capped (not replaced, as in an SFT stage)
  by ``train.max_steps`` — a step budget sized for SFT would be dozens of epochs over a few hundred pairs;
- early stopping: with at least ``MIN_QUESTIONS_FOR_VALIDATION`` questions a stable tenth of them is held out (by
  question, so the answers to one question never straddle the split, and a dpo and a kto stage on the same pairs
  hold out the same ones); the validation loss is computed every ``train.eval_every``
  steps (at least once an epoch), training stops after ``train.early_stopping_patience`` evaluations without
  improvement and the best checkpoint's adapter is restored;
- resume: a checkpoint every ``train.save_every`` steps (every evaluation when validating, so the best one is
  kept); ``--resume`` continues an interrupted stage from its last checkpoint when the stage's fingerprint (data,
  settings) is the same;
- progress: the same ``on_step(stage, step)`` callback as the SFT loop.
- packing: none — TRL 1.16's preference trainers pad (``padding_free`` is disabled in its DPO trainer, and needs
  FlashAttention where it exists); the micro-batches are a few pairs, so the padding is small.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any, Callable

from verticalize.config import Config
from verticalize.train.data import DatasetFileError, TrainError

PREFERENCE_TASKS = ("dpo", "kto")
MIN_QUESTIONS_FOR_VALIDATION = 20  # fewer: every row trains (a hold-out of one or two questions steers nothing)
VALIDATION_SHARE = 0.1
FINGERPRINT_FILE = "fingerprint.txt"


def _messages(prompt: Any) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    if not (isinstance(prompt, list) and prompt and all(isinstance(m, dict) and m.get("content") for m in prompt)):
        raise ValueError("'prompt' must be a non-empty list of messages (or a string)")
    return [{"role": m.get("role", "user"), "content": m["content"]} for m in prompt]


def _text(row: dict[str, Any], key: str) -> str:
    value = row[key]
    if not (isinstance(value, str) and value.strip()):
        raise ValueError(f"'{key}' must be a non-empty string")
    return value


def _parse_row(row: dict[str, Any]) -> dict[str, Any]:
    """A pair {prompt, chosen, rejected} or a rating {prompt, completion, label}."""
    prompt = _messages(row["prompt"])
    if "chosen" in row or "rejected" in row:
        chosen, rejected = _text(row, "chosen"), _text(row, "rejected")
        if chosen.strip() == rejected.strip():
            raise ValueError("'chosen' and 'rejected' are the same text")
        return {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    if "completion" in row:
        if not isinstance(row.get("label"), bool):
            raise ValueError("'label' must be true (a desirable answer) or false (an undesirable one)")
        return {"prompt": prompt, "completion": _text(row, "completion"), "label": row["label"]}
    raise KeyError("'chosen'/'rejected' (a pair) or 'completion'/'label' (a rating)")


def read_preference_rows(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The usable rows (pairs and ratings) of a preference JSONL and a report; a malformed line is reported, not
    fatal."""
    rows, refused = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(_parse_row(json.loads(line)))
        except (ValueError, KeyError, TypeError) as e:
            refused.append(f"line {n}: {e}")
    if not rows:
        raise DatasetFileError(f"{path}: no usable preference pair or rating"
                               + (f" ({'; '.join(refused[:3])})" if refused else " (the file is empty)"))
    pairs = sum("chosen" in r for r in rows)
    return rows, {"path": str(path), "kept": len(rows), "pairs": pairs, "ratings": len(rows) - pairs,
                  "refused": len(refused), "refused_examples": refused[:3]}


def read_preference_pairs(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The pairs of a preference JSONL (what DPO trains on); ratings there are refused with the reason."""
    rows, report = read_preference_rows(path)
    pairs = [r for r in rows if "chosen" in r]
    if not pairs:
        raise DatasetFileError(f"{path}: a dpo stage trains on pairs (prompt, chosen, rejected); this file has "
                               f"{report['ratings']} unpaired ratings only — train them with task: kto")
    return pairs, {**report, "kept": len(pairs), "ignored_ratings": report["ratings"]}


def _unpaired(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """KTO's rows: a rating as it is, a pair as its chosen answer (desirable) and its rejected one (not)."""
    out = []
    for r in rows:
        if "chosen" in r:
            out += [{"prompt": r["prompt"], "completion": r["chosen"], "label": True},
                    {"prompt": r["prompt"], "completion": r["rejected"], "label": False}]
        else:
            out.append(r)
    return out


def _question_bucket(row: dict[str, Any]) -> float:
    key = " ".join(row["prompt"][-1]["content"].lower().split())
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def validation_split(rows: list[dict[str, Any]], patience: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, validation): a stable tenth of the questions when there are enough and early stopping is on."""
    buckets = sorted({_question_bucket(r) for r in rows})
    if patience <= 0 or len(buckets) < MIN_QUESTIONS_FOR_VALIDATION:
        return rows, []
    cut = buckets[max(2, round(VALIDATION_SHARE * len(buckets))) - 1]
    return ([r for r in rows if _question_bucket(r) > cut], [r for r in rows if _question_bucket(r) <= cut])


def _conversational(rows: list[dict[str, Any]], system: list[dict[str, str]], task: str) -> list[dict[str, Any]]:
    def answer(text: str) -> list[dict[str, str]]:
        return [{"role": "assistant", "content": text}]

    if task == "dpo":
        return [{"prompt": system + r["prompt"], "chosen": answer(r["chosen"]), "rejected": answer(r["rejected"])}
                for r in rows]
    return [{"prompt": system + r["prompt"], "completion": answer(r["completion"]), "label": r["label"]}
            for r in rows]


def _kto_weights(rows: list[dict[str, Any]]) -> tuple[float, float]:
    """(desirable_weight, undesirable_weight) so both sides weigh alike (KTO's authors: their weighted counts
    within 1:1 to 4:3); one side absent leaves both at 1."""
    good = sum(r["label"] for r in rows)
    bad = len(rows) - good
    if not good or not bad:
        return 1.0, 1.0
    return (1.0, good / bad) if good >= bad else (bad / good, 1.0)


def _resume_checkpoint(work_dir: Path, fingerprint: str, resume: bool) -> str | None:
    """The last checkpoint of an interrupted run of the same stage (same fingerprint), else None (and the old
    checkpoints are removed: they belong to other data or settings)."""
    import shutil

    from transformers.trainer_utils import get_last_checkpoint

    mark = work_dir / FINGERPRINT_FILE
    same = mark.is_file() and mark.read_text(encoding="utf-8").strip() == fingerprint
    if resume and same and work_dir.is_dir() and (last := get_last_checkpoint(str(work_dir))):
        return last
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    mark.write_text(fingerprint, encoding="utf-8")
    return None


def train_preference_stage(cfg: Config, model: Any, tokenizer: Any, data_path: Path, *, task: str, name: str,
                           epochs: float, learning_rate: float, precision: Any, work_dir: Path,
                           fingerprint: str = "", resume: bool = False,
                           on_step: Callable[[str, int], None] | None = None) -> tuple[dict[str, Any], dict]:
    """DPO or KTO on ``model`` (a PEFT model whose adapter is the one to train); returns (metrics, data report)."""
    if task not in PREFERENCE_TASKS:
        raise TrainError(f"stage '{name}': task {task!r} is not a preference task ({', '.join(PREFERENCE_TASKS)})")
    try:
        from datasets import Dataset
        from transformers import EarlyStoppingCallback, TrainerCallback
        from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer
    except ImportError as e:
        raise TrainError(f"a task: {task} stage trains through TRL, which is not installed ({e}); "
                         "pip install 'verticalize[dpo]'") from None
    import torch

    if task == "dpo":
        rows, report = read_preference_pairs(data_path)
    else:
        rows, report = read_preference_rows(data_path)
        rows = _unpaired(rows)
    t = cfg.train
    train_rows, val_rows = validation_split(rows, t.early_stopping_patience)
    system = [{"role": "system", "content": cfg.project.system_prompt}] if cfg.project.system_prompt else []
    train_set = Dataset.from_list(_conversational(train_rows, system, task))
    val_set = Dataset.from_list(_conversational(val_rows, system, task)) if val_rows else None

    batch = t.dpo_batch_size if task == "dpo" else max(2, t.dpo_batch_size)  # KTO's KL term needs 2+ a batch
    per_epoch = math.ceil(len(train_rows) / (batch * t.grad_accum))
    steps = max(1, math.ceil(epochs * per_epoch))
    if t.max_steps:
        steps = min(steps, t.max_steps)
    eval_steps = max(1, min(t.eval_every, per_epoch))
    common = dict(output_dir=str(work_dir), beta=t.dpo_beta, learning_rate=learning_rate, max_steps=steps,
                  lr_scheduler_type="cosine", warmup_steps=t.warmup_ratio, per_device_train_batch_size=batch,
                  per_device_eval_batch_size=batch, gradient_accumulation_steps=t.grad_accum,
                  max_length=cfg.model.max_seq_len, bf16=precision.name == "bf16", fp16=precision.name == "fp16",
                  report_to=[], logging_steps=1, seed=cfg.project.seed, max_grad_norm=t.max_grad_norm,
                  weight_decay=t.weight_decay, activation_checkpointing=t.gradient_checkpointing,
                  dataloader_num_workers=0, use_cpu=not torch.cuda.is_available(), disable_tqdm=True,
                  save_strategy="steps", save_total_limit=2,
                  eval_strategy="steps" if val_set is not None else "no",
                  eval_steps=eval_steps if val_set is not None else None,
                  save_steps=eval_steps if val_set is not None else t.save_every,
                  load_best_model_at_end=val_set is not None, metric_for_best_model="eval_loss",
                  greater_is_better=False)
    callbacks: list[Any] = []
    if val_set is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=t.early_stopping_patience))
    if on_step is not None:
        class _Progress(TrainerCallback):
            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                on_step(name, state.global_step)
        callbacks.append(_Progress())
    weights: tuple[float, float] | None = None
    if task == "dpo":
        trainer: Any = DPOTrainer(model=model, args=DPOConfig(**common), train_dataset=train_set,
                                  eval_dataset=val_set, processing_class=tokenizer, callbacks=callbacks)
    else:
        weights = _kto_weights(train_rows)
        trainer = KTOTrainer(model=model, args=KTOConfig(**common, desirable_weight=weights[0],
                                                         undesirable_weight=weights[1]),
                             train_dataset=train_set, eval_dataset=val_set, processing_class=tokenizer,
                             callbacks=callbacks)
    start_from = _resume_checkpoint(work_dir, fingerprint, resume)
    t0, c0 = time.perf_counter(), time.process_time()
    out = trainer.train(resume_from_checkpoint=start_from)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    history = trainer.state.log_history
    logs = [row for row in history if "loss" in row]
    evals = [row["eval_loss"] for row in history if "eval_loss" in row]
    last, first = (logs[-1] if logs else {}), (logs[0] if logs else {})
    best = trainer.state.best_metric if val_set is not None else None
    metrics = {"steps": out.global_step, "total_steps": steps,
               "stopped": "early" if out.global_step < steps else "completed",
               "train_seconds": round(seconds, 3), "train_cpu_seconds": round(cpu, 3), "beta": t.dpo_beta,
               "resumed_from_step": int(Path(start_from).name.split("-")[-1]) if start_from else None,
               "final_train_loss": last.get("loss"), "first_train_loss": first.get("loss"),
               "validation_rows": len(val_rows), "validation_losses": [round(v, 5) for v in evals],
               "best_val_loss": best, "restored_best": bool(val_set is not None and evals and best is not None
                                                            and best < evals[-1] - 1e-12),
               "validation": (f"{len(val_rows)} rows held out, validation every {eval_steps} steps" if val_rows
                              else "none: early stopping off" if t.early_stopping_patience <= 0
                              else f"none: {len({_question_bucket(r) for r in rows})} questions < "
                   f"{MIN_QUESTIONS_FOR_VALIDATION}, all train")}
    if task == "dpo":
        metrics.update(pairs=len(rows), train_pairs=len(train_rows), reward_accuracy=last.get("rewards/accuracies"),
                       reward_margin=last.get("rewards/margins"))
    else:
        good = sum(r["label"] for r in rows)
        metrics.update(rows=len(rows), desirable=good, undesirable=len(rows) - good, train_rows=len(train_rows),
                       desirable_weight=weights[0], undesirable_weight=weights[1],
                       reward_margin=last.get("rewards/margins"), kl=last.get("kl"))
    return metrics, report
