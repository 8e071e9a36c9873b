"""Two-process DDP on CPU (gloo through Accelerate, started by torchrun): disjoint shards, same curve shape."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from verticalize.artifacts import RunDir, read_jsonl
from verticalize.config import load_config
from verticalize.train import train

FACTS = ["The annual fee is waived after six uses.", "Loans need proof of income and an ID.",
         "Restart the service with systemctl restart app.", "年费在刷卡六次后免收。", "逾期超过90天停止计息。"]


def write_dataset(run: Path) -> None:
    (run / "data").mkdir(parents=True)
    rows = lambda ids: "".join(json.dumps({"id": f"ex{i}", "messages": [
        {"role": "user", "content": f"What is rule {i % 5}?"},
        {"role": "assistant", "content": FACTS[i % 5]}]}) + "\n" for i in ids)
    (run / "data" / "train.jsonl").write_text(rows(range(32)))
    (run / "data" / "validation.jsonl").write_text(rows(range(100, 106)))


SETS = ["train.epochs=2", "train.batch_tokens=200", "train.learning_rate=0.02", "train.eval_every=4",
        "train.warmup_ratio=0"]


def train_cli(run: Path, model: Path, nproc: int) -> subprocess.CompletedProcess:
    sets = [f"project.run_dir={run}", f"model.base={model}", *SETS]
    args = [a for s in sets for a in ("--set", s)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
           "29517", "-m", "verticalize", "train", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def test_two_process_ddp_sees_disjoint_shards_and_learns_like_one_process(tiny_model_dir, tmp_path):
    curves = {}
    for nproc in (1, 2):
        run = tmp_path / f"run{nproc}"
        write_dataset(run)
        if nproc == 1:  # in-process: same code path, and it saves a second interpreter start-up
            torch.set_num_threads(1)
            train(load_config(None, [f"project.run_dir={run}", f"model.base={tiny_model_dir}", *SETS]), RunDir(run))
        else:
            done = train_cli(run, tiny_model_dir, nproc)
            assert done.returncode == 0, done.stderr[-3000:]
            assert done.stdout.count("task: lora sft") == 1  # one summary, printed by rank 0 only
        curves[nproc] = [r["val_loss"] for r in read_jsonl(run / "train" / "metrics.jsonl") if "val_loss" in r]
        meta = json.loads((run / "train" / "adapters" / "task" / "verticalize_adapter.json").read_text())
        assert meta["world_size"] == nproc

    shards = [json.loads((tmp_path / "run2" / "train" / "shards" / f"task.rank{r}.json").read_text())
              for r in (0, 1)]
    for epoch in ("0", "1"):
        a, b = (set(s["epochs"][epoch]) for s in shards)
        assert a and b and not a & b, epoch
    single = json.loads((tmp_path / "run1" / "train" / "shards" / "task.rank0.json").read_text())
    assert set(single["epochs"]["0"]) >= set(shards[0]["epochs"]["0"]) | set(shards[1]["epochs"]["0"])

    for n, c in curves.items():
        assert c[-1] < c[0] - 0.05, (n, c)
    drop1, drop2 = curves[1][0] - curves[1][-1], curves[2][0] - curves[2][-1]
    assert curves[1][0] == pytest.approx(curves[2][0], abs=1e-4)  # same start: same seed, same weights
    assert 0.4 < drop2 / drop1 < 2.5, (curves[1], curves[2])  # the same shape: a comparable fall
