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


@dataclass
class LoopState:
    """Where a stage's loop is: a checkpoint's ``state.json`` (the same keys) and what resume restores."""

    stage: str
    fingerprint: str
    step: int = 0
    epoch: int = 0
    window: int = 0
    best_val: float | None = None
    bad_evals: int = 0
    tokens: int = 0
    train_seconds: float = 0.0
    stopped: str | None = None
    train_cpu_seconds: float = 0.0
    last_loss: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"stage": self.stage, "step": self.step, "epoch": self.epoch, "window": self.window,
                "best_val": self.best_val, "bad_evals": self.bad_evals, "tokens": self.tokens,
                "train_seconds": self.train_seconds, "stopped": self.stopped, "fingerprint": self.fingerprint,
                "train_cpu_seconds": self.train_cpu_seconds, "last_loss": self.last_loss}

    def update(self, saved: dict[str, Any]) -> None:
        """Take the loop position a checkpoint recorded (its other keys, e.g. ``world_size``, are not state)."""
        for name in self.to_json():
            if name in saved:
                setattr(self, name, saved[name])


class _StageLoop:
    """One stage's training loop: the prepared model, optimizer and schedule, and its `LoopState`."""

    def __init__(self, run: StageRun, model: Any, cfg: Any, acc: Any, precision: Any):
        from transformers import get_cosine_schedule_with_warmup

        self.run, self.model, self.acc, self.precision, self.t = run, model, acc, precision, cfg.train
        self.rank, self.world, self.main = acc.process_index, acc.num_processes, acc.is_main_process
        self.epoch_windows, self.total_steps = plan_steps(run, self.t, cfg.project.seed, self.rank, self.world)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=run.learning_rate, weight_decay=self.t.weight_decay)
        self.scheduler = get_cosine_schedule_with_warmup(optimizer, int(self.t.warmup_ratio * self.total_steps),
                                                         self.total_steps)
        if getattr(acc.state, "deepspeed_plugin", None) is not None:
            # No dataloader goes through accelerate (we plan batches ourselves): tell DeepSpeed the micro-batch size.
            acc.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = 1
        self.wrapped, self.optimizer = acc.prepare(model, optimizer)
        self.scaler = torch.amp.GradScaler(acc.device.type, enabled=precision.name == "fp16")
        self.best_path = run.ckpt_dir.with_name(run.ckpt_dir.name + ".best.safetensors")
        self.state = LoopState(stage=run.name, fingerprint=run.fingerprint)

    # ----------------------------------------------------------------------------------------- start / resume
    def resume_or_start(self) -> None:
        """Resume from the stage's checkpoint (``run.resume``), else start clean: no old log rows, no old best."""
        run = self.run
        if run.resume and ckpt.read_state(run.ckpt_dir):
            saved = ckpt.read_state(run.ckpt_dir)
            if saved.get("fingerprint") != run.fingerprint:
                raise TrainError(f"checkpoint {run.ckpt_dir} was written with another config or dataset; start "
                                 f"again without --resume")
            self.state.update(ckpt.load_checkpoint(run.ckpt_dir, model=self.model, optimizer=self.optimizer,
                                                   scheduler=self.scheduler, rank=self.rank, world=self.world))
            if self.main:
                run.log.truncate_after(run.name, self.state.step)
        else:
            if self.main:
                run.log.drop_stage(run.name)
                self.best_path.unlink(missing_ok=True)
            self.acc.wait_for_everyone()

    def save(self) -> None:
        ckpt.save_checkpoint(self.run.ckpt_dir, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                             state=self.state.to_json(), rank=self.rank, world=self.world,
                             barrier=self.acc.wait_for_everyone)

    def log(self, row: dict[str, Any]) -> None:
        if self.main:
            self.run.log.write({"stage": self.run.name, **row})

    # ----------------------------------------------------------------------------------------- evaluate
    def eval_and_track(self) -> bool:
        """Evaluate; keep the best weights; True when early stopping says stop."""
        st = self.state
        val = evaluate(self.wrapped if _params_sharded(self.acc) else self.model, self.run, self.t, self.acc,
                       self.precision)
        if val is None:
            return False
        if not math.isfinite(val):
            raise DivergedError(f"stage '{self.run.name}': validation loss is {val} at step {st.step}; lower "
                                f"train.learning_rate or use train.precision=fp32")
        self.log({"step": st.step, "epoch": st.epoch, "val_loss": round(val, 6)})
        if st.best_val is None or val < st.best_val:
            st.best_val, st.bad_evals = val, 0
            if self.main:
                ckpt.save_best(self.best_path, self.model)
            self.acc.wait_for_everyone()
        else:
            st.bad_evals += 1
        patience = self.t.early_stopping_patience
        return bool(patience and st.bad_evals >= patience)

    # ----------------------------------------------------------------------------------------- train
    def train(self) -> dict[str, Any]:
        """Run the loop to the end (steps done, or early stopping); the best-validation weights are restored."""
        st = self.state
        if st.step == 0 and self.eval_and_track():
            st.stopped = "early_stopping"
        self.bar = _progress(self.total_steps, st.step, self.run.name, self.main)
        self.wrapped.train()
        stop = st.stopped is not None or st.step >= self.total_steps
        while not stop:
            wins = self.epoch_windows(st.epoch)
            while st.window < len(wins) and not stop:
                stop = self.step(wins)
        self.bar.close()
        _write_shard_ids(self.run, self.epoch_windows, st.step, self.rank, self.world)
        restored = ckpt.restore_best(self.best_path, self.model)
        self.acc.wait_for_everyone()
        return self.metrics(restored)

    def step(self, wins: list[list[Batch]]) -> bool:
        """One optimizer step on the epoch's next window, its log row, then what is due; True to stop."""
        st, acc = self.state, self.acc
        t0, c0 = time.perf_counter(), time.process_time()
        window = wins[st.window]
        loss_val, gn = self.optimize(window)
        tokens = int(acc.reduce(torch.tensor(sum(b.n_tokens for b in window), device=acc.device), reduction="sum"))
        dt = time.perf_counter() - t0
        st.step += 1
        st.window += 1
        st.tokens += tokens
        st.train_seconds += dt
        st.train_cpu_seconds += time.process_time() - c0
        st.last_loss = loss_val
        self.log({"step": st.step, "epoch": st.epoch, "loss": round(loss_val, 6), "grad_norm": round(gn, 4),
                  "lr": self.scheduler.get_last_lr()[0], "tokens": tokens, "tokens_per_s": round(tokens / dt, 1)})
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{loss_val:.3f}", tok_s=f"{tokens / dt:.0f}")
        return self.after_step(epoch_end=st.window >= len(wins))

    def optimize(self, window: list[Batch]) -> tuple[float, float]:
        """Forward/backward over the window's micro-batches, clip, the NaN/inf guard, the optimizer step:
        (loss per target token, gradient norm).

        With several processes the loss is normalised by the *global* number of target tokens of the step (the
        sum over ranks), so an optimizer step is the mean over every token of the step whatever the shard sizes —
        the same gradient one process would compute on the same micro-batches. Every rank also runs the *same
        number* of forward/backward passes: a rank with fewer rows repeats its first row with weight 0, so the
        collectives of sharded engines (FSDP / ZeRO-3 gather weights in every forward) line up."""
        acc, run, wrapped = self.acc, self.run, self.wrapped
        parts = [p for b in window for p in b.parts]
        local = torch.tensor([float(sum(b.n_targets for b in window)), float(len(parts))], device=acc.device)
        if self.world > 1:
            counts = acc.gather(local.unsqueeze(0))  # (world, 2)
            n_targets, n_passes = max(float(counts[:, 0].sum()), 1.0), int(counts[:, 1].max())
        else:
            n_targets, n_passes = max(float(local[0]), 1.0), len(parts)
        # DDP averages the gradients over the processes: scale by world so the average is the global-token mean.
        scale = self.world / n_targets
        step_loss = torch.zeros((), dtype=torch.float64)
        for j in range(n_passes):
            padding = j >= len(parts)
            batch = collate(run.train, parts[0] if padding else parts[j], packing=run.packing, pad_id=run.pad_id)
            # gradients are all-reduced once per optimizer step, on its last forward/backward
            sync = contextlib.nullcontext() if j == n_passes - 1 else acc.no_sync(wrapped)
            with sync:
                with autocast(acc, self.precision):
                    ls = loss_sum(wrapped, batch, run.n_virtual, acc.device) * (0.0 if padding else 1.0)
                acc.backward(self.scaler.scale(ls * scale))
            step_loss += ls.detach().double().cpu()
        self.scaler.unscale_(self.optimizer)
        grad_norm = acc.clip_grad_norm_(wrapped.parameters(), self.t.max_grad_norm)
        total = acc.reduce(step_loss.to(acc.device), reduction="sum") if self.world > 1 else step_loss
        loss_val = float(total) / n_targets
        gn = float(grad_norm) if grad_norm is not None else 0.0
        # fp16: an overflowing gradient is the scaler's business (it skips the step and lowers the scale)
        if not math.isfinite(loss_val) or (not self.scaler.is_enabled() and not math.isfinite(gn)):
            raise DivergedError(f"stage '{run.name}': training loss/gradient became non-finite (loss={loss_val}, "
                                f"grad_norm={gn}) at step {self.state.step + 1}; lower train.learning_rate, use "
                                f"train.precision=fp32, or check the data. Last checkpoint: {run.ckpt_dir}")
        self.scaler.step(self.optimizer)  # fp16 only: skips a step whose gradients overflowed
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss_val, gn

    def after_step(self, epoch_end: bool) -> bool:
        """Evaluation (every ``eval_every``, at an epoch's end, at the last step), the epoch turn, the checkpoint
        (every ``save_every``) and the step callback; True to stop."""
        st, stop = self.state, False
        done = st.step >= self.total_steps
        if (st.step % self.t.eval_every == 0 or epoch_end or done) and self.eval_and_track():
            st.stopped, stop = "early_stopping", True
        if epoch_end:
            st.epoch, st.window = st.epoch + 1, 0
        if done:
            stop = True
        elif not stop and st.step % self.t.save_every == 0:
            self.save()
        if self.run.on_step is not None:
            self.run.on_step(self.run.name, st.step)
        return stop

    def metrics(self, restored: bool) -> dict[str, Any]:
        st = self.state
        return {"steps": st.step, "total_steps": self.total_steps, "epochs_done": round(st.epoch, 3),
                "best_val_loss": st.best_val, "restored_best": restored, "stopped": st.stopped or "completed",
                "real_tokens": st.tokens, TRAIN_SECONDS: round(st.train_seconds, 3),  # eval's training_time_s
                "train_cpu_seconds": round(st.train_cpu_seconds, 3),
                "tokens_per_s": round(st.tokens / max(st.train_seconds, 1e-9), 1),
                "final_train_loss": st.last_loss}


def run_stage(run: StageRun, model: Any, cfg: Any, acc: Any, precision: Any) -> dict[str, Any]:
    """Train one stage; returns its metrics. ``model`` is unwrapped; the best-validation weights are restored."""
    loop = _StageLoop(run, model, cfg, acc, precision)
    loop.resume_or_start()
    return loop.train()
