"""Resumable checkpoints: trainable weights (safetensors), optimizer + scheduler, per-process RNG, loop position.

A checkpoint directory is written under a temporary name and renamed, so an interruption never leaves half of
one. Only the trainable parameters are stored (the frozen base is reloaded from the model), and the data order is
rebuilt from (seed, epoch), so the loop position (epoch, window) is enough to replay exactly what is left.
Optimizer state is loaded with ``torch.load(weights_only=True)``: tensors and plain values only, no code.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file

from verticalize.train.data import TrainError


def trainable_state(model: Any) -> dict[str, torch.Tensor]:
    return {n: p.detach().to("cpu").contiguous().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: Any, tensors: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    missing = [n for n in tensors if n not in params]
    if missing:
        raise TrainError(f"checkpoint does not match the model (unknown parameters, e.g. {missing[0]}): was it "
                         f"written with another train.method or base? Start again without --resume")
    with torch.no_grad():
        for name, value in tensors.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))


def save_checkpoint(ckpt_dir: Path, *, model: Any, optimizer: Any, scheduler: Any, state: dict[str, Any],
                    rank: int, world: int, barrier: Callable[[], None]) -> None:
    """Every process calls this (each writes its own RNG state); rank 0 writes the rest and publishes."""
    tmp = ckpt_dir.with_name(ckpt_dir.name + ".tmp")
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    torch.save({"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
               tmp / f"rng_rank{rank}.pt")
    barrier()
    if rank == 0:
        save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optim.pt")
        (tmp / "state.json").write_text(json.dumps({**state, "world_size": world}, indent=2), encoding="utf-8")
        old = ckpt_dir.with_name(ckpt_dir.name + ".old")
        if ckpt_dir.exists():
            os.replace(ckpt_dir, old)
        os.replace(tmp, ckpt_dir)
        shutil.rmtree(old, ignore_errors=True)
    barrier()


def read_state(ckpt_dir: Path) -> dict[str, Any] | None:
    path = ckpt_dir / "state.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def load_checkpoint(ckpt_dir: Path, *, model: Any, optimizer: Any, scheduler: Any, rank: int,
                    world: int) -> dict[str, Any]:
    state = read_state(ckpt_dir)
    if state is None:
        raise TrainError(f"no checkpoint in {ckpt_dir}")
    if state.get("world_size") != world:
        raise TrainError(f"checkpoint {ckpt_dir} was written by {state.get('world_size')} processes, this run has "
                         f"{world}: resume with the same number of processes")
    load_trainable_state(model, load_file(str(ckpt_dir / "trainable.safetensors")))
    optim = torch.load(ckpt_dir / "optim.pt", weights_only=True)
    optimizer.load_state_dict(optim["optimizer"])
    scheduler.load_state_dict(optim["scheduler"])
    rng = torch.load(ckpt_dir / f"rng_rank{rank}.pt", weights_only=True)
    torch.set_rng_state(rng["torch"])
    if rng["cuda"]:
        torch.cuda.set_rng_state_all(rng["cuda"])
    return state


def save_best(path: Path, model: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(trainable_state(model), str(tmp))
    os.replace(tmp, path)


def restore_best(path: Path, model: Any) -> bool:
    if not path.is_file():
        return False
    load_trainable_state(model, load_file(str(path)))
    return True
