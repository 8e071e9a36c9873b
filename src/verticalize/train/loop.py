"""The training loop of one stage: an explicit loop on Accelerate's ``Accelerator`` (so DDP/FSDP/DeepSpeed run it
unchanged), token-normalised gradient accumulation, clipping, cosine schedule with warm-up, evaluation with early
stopping, a NaN/inf guard, checkpoints and exact resume.

Loss: summed over the trained tokens of the optimizer step and divided by their count, so long and short examples
weigh per token. In packed batches only the positions that have a target go through the LM head
(``logits_to_keep`` with indices): the vocabulary projection of prompt tokens is never computed.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from verticalize.artifacts import TRAIN_SECONDS
from verticalize.train import checkpoint as ckpt
from verticalize.train.batching import IGNORE, Batch, collate, plan_batches, shard, windows
from verticalize.train.data import Example, TrainError
from verticalize.train.report import MetricsLog

StepCallback = Callable[[str, int], None]


class DivergedError(TrainError):
    """The loss or gradient became NaN/inf."""


@dataclass
class StageRun:
    """Everything one stage's loop needs."""

    name: str
    train: list[Example]
    val: list[Example]
    epochs: float
    learning_rate: float
    packing: bool
    n_virtual: int
    pad_id: int
    ckpt_dir: Path
    log: MetricsLog
    fingerprint: str
    resume: bool = False
    on_step: StepCallback | None = None
    result: dict[str, Any] = field(default_factory=dict)


def loss_sum(model: Any, batch: dict[str, torch.Tensor], n_virtual: int, device: torch.device) -> torch.Tensor:
    """Summed next-token cross-entropy (fp32) over the batch's targets."""
    targets = batch["targets"].to(device)
    if "position_ids" in batch:
        keep = (targets[0] != IGNORE).nonzero().squeeze(1)
        out = model(input_ids=batch["input_ids"].to(device), position_ids=batch["position_ids"].to(device),
                    logits_to_keep=keep, use_cache=False)
        logits, tgt = out.logits[0], targets[0, keep]
    else:
        out = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                    use_cache=False)
        sel = targets != IGNORE
        logits, tgt = out.logits[:, n_virtual:][sel], targets[sel]
    return F.cross_entropy(logits.float(), tgt, reduction="sum")


def plan_steps(run: StageRun, cfg_train: Any, seed: int, rank: int, world: int) -> tuple[Callable[[int], list],
                                                                                          int]:
    """(windows of an epoch, total optimizer steps). Epoch plans depend only on (seed, epoch)."""
    def epoch_windows(epoch: int) -> list[list[Batch]]:
        batches = plan_batches(run.train, cfg_train.batch_tokens, packing=run.packing, seed=seed, epoch=epoch,
                               pack_len=cfg_train.pack_len)
        return windows(shard(batches, rank, world), cfg_train.grad_accum)

    first = epoch_windows(0)
    if not first:
        raise TrainError(f"stage '{run.name}': {len(run.train)} training examples make fewer micro-batches than "
                         f"the {world} processes; add data or lower train.batch_tokens")
    if cfg_train.max_steps:
        return epoch_windows, int(cfg_train.max_steps)
    whole, frac = int(run.epochs), run.epochs - int(run.epochs)
    total = sum(len(epoch_windows(e)) for e in range(whole))
    if frac > 0:
        total += max(1, round(frac * len(epoch_windows(whole))))
    if cfg_train.max_tokens:  # the budget: each epoch is a fresh shuffle, so a cut epoch is a random subset
        total = min(total, max(1, cfg_train.max_tokens // (cfg_train.batch_tokens * cfg_train.grad_accum * world)))
    return epoch_windows, max(total, 1)


def autocast(acc: Any, precision: Any) -> Any:
    if precision.autocast is None:
        return contextlib.nullcontext()
    return torch.autocast(acc.device.type, dtype=precision.autocast)


def _params_sharded(acc: Any) -> bool:
    """FSDP / DeepSpeed hold only a shard of the weights per process: forward passes need the wrapped model and
    run collectives, so every process must run the same batches."""
    return str(acc.distributed_type).split(".")[-1] in ("FSDP", "DEEPSPEED")


def evaluate(model: Any, run: StageRun, cfg_train: Any, acc: Any, precision: Any) -> float | None:
    """Loss per target token on the validation examples. ``model``: unwrapped (DDP) or wrapped (FSDP/DeepSpeed)."""
    if not run.val:
        return None
    batches = plan_batches(run.val, cfg_train.batch_tokens, packing=run.packing, seed=0, epoch=0, shuffle=False,
                           pack_len=cfg_train.pack_len)
    everyone_all = _params_sharded(acc)
    mine = batches if everyone_all else shard(batches, acc.process_index, acc.num_processes, even=False)
    was_training = model.training
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=acc.device)
    with torch.no_grad(), autocast(acc, precision):
        for part in (p for b in mine for p in b.parts):
            total[0] += loss_sum(model, collate(run.val, part, packing=run.packing, pad_id=run.pad_id),
                                 run.n_virtual, acc.device).double()
            total[1] += sum(run.val[i].n_targets for i in part)
    model.train(was_training)
    if not everyone_all:
        total = acc.reduce(total, reduction="sum")
    return float(total[0] / total[1]) if total[1] > 0 else None


def _progress(total: int, initial: int, name: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, desc=f"train {name}", unit="step", disable=None if enabled else True,
                dynamic_ncols=True)


def _write_shard_ids(run: StageRun, epoch_windows: Callable[[int], list], steps: int, rank: int,
                     world: int) -> None:
    """Which examples this process trained on, per epoch (RUN/train/shards/): shows that DDP shards are disjoint."""
    seen: dict[str, list[str]] = {}
    epoch = 0
    while steps > 0:
        wins = epoch_windows(epoch)[:steps]
        seen[str(epoch)] = [run.train[i].id for w in wins for b in w for i in b.indices]
        steps -= len(wins)
        epoch += 1
    out = run.ckpt_dir.parent.parent / "shards" / f"{run.name}.rank{rank}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"stage": run.name, "rank": rank, "world_size": world, "epochs": seen}),
                   encoding="utf-8")


def run_stage(run: StageRun, model: Any, cfg: Any, acc: Any, precision: Any) -> dict[str, Any]:
    """Train one stage; returns its metrics. ``model`` is unwrapped; the best-validation weights are restored."""
    from transformers import get_cosine_schedule_with_warmup

    t = cfg.train
    rank, world, main = acc.process_index, acc.num_processes, acc.is_main_process
    epoch_windows, total_steps = plan_steps(run, t, cfg.project.seed, rank, world)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=run.learning_rate, weight_decay=t.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(t.warmup_ratio * total_steps), total_steps)
    if getattr(acc.state, "deepspeed_plugin", None) is not None:
        # No dataloader goes through accelerate (we plan batches ourselves): tell DeepSpeed the micro-batch size.
        acc.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = 1
    wrapped, optimizer = acc.prepare(model, optimizer)
    scaler = torch.amp.GradScaler(acc.device.type, enabled=precision.name == "fp16")
    best_path = run.ckpt_dir.with_name(run.ckpt_dir.name + ".best.safetensors")

    st = {"stage": run.name, "step": 0, "epoch": 0, "window": 0, "best_val": None, "bad_evals": 0,
          "tokens": 0, "train_seconds": 0.0, "stopped": None, "fingerprint": run.fingerprint}
    if run.resume and ckpt.read_state(run.ckpt_dir):
        saved = ckpt.read_state(run.ckpt_dir)
        if saved.get("fingerprint") != run.fingerprint:
            raise TrainError(f"checkpoint {run.ckpt_dir} was written with another config or dataset; start again "
                             f"without --resume")
        st.update(ckpt.load_checkpoint(run.ckpt_dir, model=model, optimizer=optimizer, scheduler=scheduler,
                                       rank=rank, world=world))
        if main:
            run.log.truncate_after(run.name, st["step"])
    else:
        if main:
            run.log.drop_stage(run.name)
            best_path.unlink(missing_ok=True)
        acc.wait_for_everyone()

    def log(row: dict[str, Any]) -> None:
        if main:
            run.log.write({"stage": run.name, **row})

    def eval_and_track() -> bool:
        """Evaluate; True when early stopping says stop."""
        val = evaluate(wrapped if _params_sharded(acc) else model, run, t, acc, precision)
        if val is None:
            return False
        if not math.isfinite(val):
            raise DivergedError(f"stage '{run.name}': validation loss is {val} at step {st['step']}; lower "
                                f"train.learning_rate or use train.precision=fp32")
        log({"step": st["step"], "epoch": st["epoch"], "val_loss": round(val, 6)})
        if st["best_val"] is None or val < st["best_val"]:
            st["best_val"], st["bad_evals"] = val, 0
            if main:
                ckpt.save_best(best_path, model)
            acc.wait_for_everyone()
        else:
            st["bad_evals"] += 1
        patience = t.early_stopping_patience
        return bool(patience and st["bad_evals"] >= patience)

    if st["step"] == 0 and eval_and_track():
        st["stopped"] = "early_stopping"
    bar = _progress(total_steps, st["step"], run.name, main)
    wrapped.train()
    stop = st["stopped"] is not None or st["step"] >= total_steps
    while not stop:
        wins = epoch_windows(st["epoch"])
        while st["window"] < len(wins) and not stop:
            t0, c0 = time.perf_counter(), time.process_time()
            window = wins[st["window"]]
            n_targets = max(sum(b.n_targets for b in window), 1)
            step_loss = torch.zeros((), dtype=torch.float64)
            parts = [p for b in window for p in b.parts]
            for j, part in enumerate(parts):
                batch = collate(run.train, part, packing=run.packing, pad_id=run.pad_id)
                # gradients are all-reduced once per optimizer step, on its last forward/backward
                sync = contextlib.nullcontext() if j == len(parts) - 1 else acc.no_sync(wrapped)
                with sync:
                    with autocast(acc, precision):
                        ls = loss_sum(wrapped, batch, run.n_virtual, acc.device)
                    acc.backward(scaler.scale(ls / n_targets))
                step_loss += ls.detach().double().cpu() / n_targets
            scaler.unscale_(optimizer)
            grad_norm = acc.clip_grad_norm_(wrapped.parameters(), t.max_grad_norm)
            loss_val = float(acc.reduce(step_loss.to(acc.device), reduction="mean"))
            gn = float(grad_norm) if grad_norm is not None else 0.0
            # fp16: an overflowing gradient is the scaler's business (it skips the step and lowers the scale)
            if not math.isfinite(loss_val) or (not scaler.is_enabled() and not math.isfinite(gn)):
                raise DivergedError(f"stage '{run.name}': training loss/gradient became non-finite (loss={loss_val}, "
                                    f"grad_norm={gn}) at step {st['step'] + 1}; lower train.learning_rate, use "
                                    f"train.precision=fp32, or check the data. Last checkpoint: {run.ckpt_dir}")
            scaler.step(optimizer)  # fp16 only: skips a step whose gradients overflowed
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            tokens = int(acc.reduce(torch.tensor(sum(b.n_tokens for b in window), device=acc.device),
                                    reduction="sum"))
            dt = time.perf_counter() - t0
            st["step"] += 1
            st["window"] += 1
            st["tokens"] += tokens
            st["train_seconds"] += dt
            st["train_cpu_seconds"] = st.get("train_cpu_seconds", 0.0) + time.process_time() - c0
            st["last_loss"] = loss_val
            log({"step": st["step"], "epoch": st["epoch"], "loss": round(loss_val, 6), "grad_norm": round(gn, 4),
                 "lr": scheduler.get_last_lr()[0], "tokens": tokens, "tokens_per_s": round(tokens / dt, 1)})
            bar.update(1)
            bar.set_postfix(loss=f"{loss_val:.3f}", tok_s=f"{tokens / dt:.0f}")
            epoch_end = st["window"] >= len(wins)
            done = st["step"] >= total_steps
            if (st["step"] % t.eval_every == 0 or epoch_end or done) and eval_and_track():
                st["stopped"], stop = "early_stopping", True
            if epoch_end:
                st["epoch"], st["window"] = st["epoch"] + 1, 0
            if done:
                stop = True
            elif not stop and st["step"] % t.save_every == 0:
                ckpt.save_checkpoint(run.ckpt_dir, model=model, optimizer=optimizer, scheduler=scheduler, state=st,
                                     rank=rank, world=world, barrier=acc.wait_for_everyone)
            if run.on_step is not None:
                run.on_step(run.name, st["step"])
    bar.close()
    _write_shard_ids(run, epoch_windows, st["step"], rank, world)
    restored = ckpt.restore_best(best_path, model)
    acc.wait_for_everyone()
    return {"steps": st["step"], "total_steps": total_steps, "epochs_done": round(st["epoch"], 3),
            "best_val_loss": st["best_val"], "restored_best": restored, "stopped": st["stopped"] or "completed",
            "real_tokens": st["tokens"], TRAIN_SECONDS: round(st["train_seconds"], 3),  # eval's training_time_s
            "train_cpu_seconds": round(st.get("train_cpu_seconds", 0.0), 3),
            "tokens_per_s": round(st["tokens"] / max(st["train_seconds"], 1e-9), 1),
            "final_train_loss": st.get("last_loss")}
