"""Preference tuning (DPO) as a layered stage, through TRL's ``DPOTrainer``.

A stage ``{name: prefs, task: dpo, data: preferences}`` in ``train.stages`` trains on the preference pairs of the
reviewed feedback (``verticalize feedback export RUN --preferences`` → ``RUN/feedback/preferences.jsonl``; or any
JSONL of ``{"prompt": [messages], "chosen": str, "rejected": str}``). It is layered like every LoRA-family stage:
the earlier stages are merged into the base and a fresh adapter is trained, so the DPO reference model — the
adapter switched off — is exactly the model the earlier stages made (TRL uses the PEFT model with its adapter
disabled as the reference when no reference model is given). The prompt is formed as the SFT stages form it: the
project's system prompt, then the conversation.

What TRL does here and what the SFT loop does: precision (bf16 autocast where the device has it) and the learning
rate schedule (warm-up + cosine) are the same; steps are the stage's epochs over its pairs, capped (not replaced,
as in an SFT stage) by ``train.max_steps``; a DPO stage is short, so it is not checkpointed mid-stage (``--resume``
retrains it) and not early-stopped.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from verticalize.config import Config
from verticalize.train.data import DatasetFileError, TrainError


def read_preference_pairs(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The usable pairs of a preference JSONL and a report; a malformed line is reported, not fatal."""
    rows, refused = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            prompt, chosen, rejected = row["prompt"], row["chosen"], row["rejected"]
            if isinstance(prompt, str):
                prompt = [{"role": "user", "content": prompt}]
            if not (isinstance(prompt, list) and prompt and all(isinstance(m, dict) and m.get("content")
                                                                  for m in prompt)):
                raise ValueError("'prompt' must be a non-empty list of messages (or a string)")
            if not (isinstance(chosen, str) and isinstance(rejected, str) and chosen.strip() and rejected.strip()):
                raise ValueError("'chosen' and 'rejected' must be non-empty strings")
            if chosen.strip() == rejected.strip():
                raise ValueError("'chosen' and 'rejected' are the same text")
        except (ValueError, KeyError, TypeError) as e:
            refused.append(f"line {n}: {e}")
            continue
        rows.append({"prompt": [{"role": m.get("role", "user"), "content": m["content"]} for m in prompt],
                     "chosen": chosen, "rejected": rejected})
    if not rows:
        raise DatasetFileError(f"{path}: no usable preference pair"
                               + (f" ({'; '.join(refused[:3])})" if refused else " (the file is empty)"))
    return rows, {"path": str(path), "kept": len(rows), "refused": len(refused), "refused_examples": refused[:3]}


def train_preference_stage(cfg: Config, model: Any, tokenizer: Any, data_path: Path, *, epochs: float,
                           learning_rate: float, precision: Any, work_dir: Path) -> tuple[dict[str, Any], dict]:
    """DPO on ``model`` (a PEFT model whose adapter is the one to train); returns (metrics, data report)."""
    try:
        from datasets import Dataset
        from trl import DPOConfig, DPOTrainer
    except ImportError as e:
        raise TrainError(f"a task: dpo stage trains through TRL, which is not installed ({e}); "
                         "pip install 'verticalize[dpo]'") from None
    import torch

    pairs, report = read_preference_pairs(data_path)
    system = [{"role": "system", "content": cfg.project.system_prompt}] if cfg.project.system_prompt else []
    dataset = Dataset.from_list([{"prompt": system + p["prompt"],
                                  "chosen": [{"role": "assistant", "content": p["chosen"]}],
                                  "rejected": [{"role": "assistant", "content": p["rejected"]}]} for p in pairs])
    t = cfg.train
    # The stage's epochs over its pairs, capped by train.max_steps: a step budget sized for an SFT stage would be
    # dozens of epochs over a few hundred pairs (measured: 150 steps on 11 pairs over-fit, DPO loss 2e-4).
    per_epoch = math.ceil(len(pairs) / (t.dpo_batch_size * t.grad_accum))
    steps = max(1, math.ceil(epochs * per_epoch))
    if t.max_steps:
        steps = min(steps, t.max_steps)
    args = DPOConfig(output_dir=str(work_dir), beta=t.dpo_beta, learning_rate=learning_rate,
                     max_steps=steps, lr_scheduler_type="cosine",
                     warmup_steps=t.warmup_ratio, per_device_train_batch_size=t.dpo_batch_size,
                     gradient_accumulation_steps=t.grad_accum, max_length=cfg.model.max_seq_len,
                     bf16=precision.name == "bf16", fp16=precision.name == "fp16", save_strategy="no",
                     eval_strategy="no", report_to=[], logging_steps=1, seed=cfg.project.seed,
                     gradient_checkpointing=t.gradient_checkpointing,
                     dataloader_num_workers=0, use_cpu=not torch.cuda.is_available(), disable_tqdm=True)
    trainer = DPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    t0, c0 = time.perf_counter(), time.process_time()
    out = trainer.train()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    logs = [row for row in trainer.state.log_history if "loss" in row]
    last = logs[-1] if logs else {}
    first = logs[0] if logs else {}
    metrics = {"steps": out.global_step, "total_steps": out.global_step, "stopped": "completed",
               "train_seconds": round(seconds, 3), "train_cpu_seconds": round(cpu, 3),
               "pairs": len(pairs), "beta": t.dpo_beta, "final_train_loss": last.get("loss"),
               "first_train_loss": first.get("loss"),
               "reward_accuracy": last.get("rewards/accuracies"), "reward_margin": last.get("rewards/margins"),
               "best_val_loss": None, "restored_best": False}
    return metrics, report
