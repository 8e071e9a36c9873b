"""Two-process DDP on CPU (gloo through Accelerate, started by torchrun): disjoint shards, and the same loss
curve as one process that accumulates the same micro-batches (the loss is normalised by the global token count)."""

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


# No dropout: the processes draw other dropout masks than one process would, and the curves are compared exactly.
SETS = ["train.epochs=2", "train.batch_tokens=200", "train.learning_rate=0.02", "train.eval_every=4",
        "train.warmup_ratio=0", "train.lora.dropout=0"]


def train_cli(run: Path, model: Path, nproc: int, *extra: str) -> subprocess.CompletedProcess:
    sets = [f"project.run_dir={run}", f"model.base={model}", *SETS, *extra]
    args = [a for s in sets for a in ("--set", s)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
           "29517", "-m", "verticalize", "train", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def test_two_process_ddp_sees_disjoint_shards_and_learns_like_one_process(tiny_model_dir, tmp_path):
    curves, steps = {}, {}
    for nproc in (1, 2):
        run = tmp_path / f"run{nproc}"
        write_dataset(run)
        if nproc == 1:  # in-process: same code path, and it saves a second interpreter start-up
            # Two micro-batches per step: the ones the two processes take between them in the same step.
            torch.set_num_threads(1)
            train(load_config(None, [f"project.run_dir={run}", f"model.base={tiny_model_dir}", *SETS,
                                     "train.grad_accum=2"]), RunDir(run))
        else:
            done = train_cli(run, tiny_model_dir, nproc)
            assert done.returncode == 0, done.stderr[-3000:]
            assert done.stdout.count("task: lora sft") == 1  # one summary, printed by rank 0 only
        rows = list(read_jsonl(run / "train" / "metrics.jsonl"))
        curves[nproc] = [r["val_loss"] for r in rows if "val_loss" in r]
        steps[nproc] = [(r["step"], r["loss"], r["tokens"]) for r in rows if "loss" in r]
        meta = json.loads((run / "train" / "adapters" / "task" / "verticalize_adapter.json").read_text())
        assert meta["world_size"] == nproc
    # The first epoch is the same micro-batches step for step (one process may have an odd one left at its end):
    # the same tokens, and the same loss per step because both normalise by all the step's target tokens.
    first_epoch = len(steps[2]) // 2
    assert first_epoch >= 3
    for (s1, loss1, tok1), (s2, loss2, tok2) in zip(steps[1][:first_epoch], steps[2][:first_epoch]):
        assert s1 == s2 and tok1 == tok2
        assert loss1 == pytest.approx(loss2, abs=2e-3), (steps[1], steps[2])

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


def test_two_process_run_killed_mid_run_resumes_to_the_same_weights(tiny_model_dir, tmp_path):
    """kill -9 of the whole two-process job (no clean shutdown), then `train --resume` with two processes: the
    adapter equals the one of an uninterrupted two-process run, tensor for tensor."""
    import signal
    import time

    import psutil
    from safetensors.torch import load_file

    extra = ("train.max_steps=40", "train.save_every=4", "train.eval_every=1000", "train.epochs=100")
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    for run in (straight, broken):
        write_dataset(run)
    done = train_cli(straight, tiny_model_dir, 2, *extra)
    assert done.returncode == 0, done.stderr[-3000:]

    sets = [f"project.run_dir={broken}", f"model.base={tiny_model_dir}", *SETS, *extra]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29518",
           "-m", "verticalize", "train", *[a for s in sets for a in ("--set", s)]]
    job = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    state = broken / "train" / "checkpoints" / "task" / "state.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and job.poll() is None:
        if state.is_file() and json.loads(state.read_text()).get("step", 0) >= 8:
            break
        time.sleep(0.01)
    assert job.poll() is None, "the run ended before it could be killed: raise train.max_steps"
    # torchrun and both workers at once (the workers are torchrun's children, in process groups of their own).
    family = [job.pid] + [c.pid for c in psutil.Process(job.pid).children(recursive=True)]
    for pid in family:
        os.kill(pid, signal.SIGKILL)
    job.wait(timeout=30)
    psutil.wait_procs([p for p in (psutil.Process(x) for x in family[1:] if psutil.pid_exists(x))], timeout=30)
    saved = json.loads(state.read_text())["step"]
    assert 8 <= saved < 40 and not (broken / "train" / "adapters" / "task" / "adapter_model.safetensors").exists()

    resumed = subprocess.run(cmd[:-2 * len(sets)] + ["--resume"] + cmd[-2 * len(sets):], capture_output=True,
                             text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = load_file(str(straight / "train" / "adapters" / "task" / "adapter_model.safetensors"))
    b = load_file(str(broken / "train" / "adapters" / "task" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
