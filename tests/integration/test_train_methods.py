"""Every method trains on the tiny model and its validation loss falls; artifacts; early stopping; exact resume;
NaN guard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from verticalize.artifacts import RunDir, read_jsonl
from verticalize.config import load_config
from verticalize.methods import get as get_method
from verticalize.methods import methods
from verticalize.train import DivergedError, TrainError, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


FACTS = ["The annual fee is waived after six uses.", "Loans need proof of income and an ID.",
         "Restart the service with systemctl restart app.", "年费在刷卡六次后免收。", "逾期超过90天停止计息。"]


def write_dataset(run: Path, n_train: int = 24, n_val: int = 6) -> None:
    def row(i: int) -> dict:
        return {"id": f"ex{i}", "messages": [{"role": "user", "content": f"What is rule {i % 5}?"},
                                             {"role": "assistant", "content": FACTS[i % 5]}],
                "meta": {"kind": "synthetic", "task": "qa"}}
    (run / "data").mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", range(n_train)), ("validation", range(100, 100 + n_val))):
        (run / "data" / f"{split}.jsonl").write_text("".join(json.dumps(row(i)) + "\n" for i in rows))


def config(model_dir: Path, run: Path, *extra: str):
    return load_config(None, [f"model.base={model_dir}", f"project.run_dir={run}", "project.system_prompt=Be exact.",
                              "train.batch_tokens=200", "train.max_steps=6", "train.eval_every=3",
                              "train.warmup_ratio=0", *extra])


def val_losses(run: Path, stage: str = "task") -> list[float]:
    return [r["val_loss"] for r in read_jsonl(run / "train" / "metrics.jsonl")
            if r["stage"] == stage and "val_loss" in r]


@pytest.mark.parametrize("method,lr", [("lora", 2e-2), ("dora", 2e-2), ("ia3", 1e-1), ("prefix", 5e-2),
                                       ("prompt", 2e-1), ("full", 3e-3)])
def test_each_method_trains_and_validation_loss_falls(tiny_model_dir, tmp_path, method, lr):
    run = tmp_path / "run"
    write_dataset(run)
    summary = train(config(tiny_model_dir, run, f"train.method={method}", f"train.learning_rate={lr}"),
                    RunDir(run))
    stage = summary["stages"][0]
    losses = val_losses(run)
    assert losses[-1] < losses[0] - 0.01, losses
    assert stage["metrics"]["best_val_loss"] == pytest.approx(min(losses), abs=1e-5)
    assert 0 < stage["trainable_params"] <= stage["total_params"]
    assert stage["trainable_share"] == pytest.approx(stage["trainable_params"] / stage["total_params"], rel=1e-3)
    adapter = run / "train" / "adapters" / "task"
    meta = json.loads((adapter / "verticalize_adapter.json").read_text())
    assert meta["method"] == method and meta["parent"] is None and meta["base"] == str(tiny_model_dir)
    if method == "full":
        assert stage["trainable_share"] == 1.0 and (adapter / "model.safetensors").is_file()
    else:
        assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
        assert stage["trainable_share"] < 0.2
    assert meta["packing"] is (method not in ("prefix", "prompt"))
    for f in ("metrics.jsonl", "loss_curve.png", "manifest.json", "config.yaml"):
        assert (run / "train" / f).is_file(), f
    assert not (run / "train" / "checkpoints" / "task").exists()  # removed once the stage is complete


@pytest.mark.parametrize("method", [m.name for m in methods() if not m.needs_cuda])
def test_every_registered_method_trains_one_step(tiny_model_dir, tmp_path, method):
    """A method is one module of verticalize.methods: once registered it trains with no other change (loha is
    the proof), and trains as many parameters as the planner counts for it."""
    from verticalize.plan import estimate

    run = tmp_path / "run"
    write_dataset(run, n_train=8, n_val=2)
    cfg = config(tiny_model_dir, run, f"train.method={method}", "train.max_steps=1", "train.learning_rate=1e-2")
    stage = train(cfg, RunDir(run))["stages"][0]
    assert stage["trainable_params"] == estimate(cfg, tokens=1).trainable
    meta = json.loads((run / "train" / "adapters" / "task" / "verticalize_adapter.json").read_text())
    assert meta["method"] == method and meta["packing"] is get_method(method).packs
    assert len(val_losses(run)) >= 1 and all(v == v for v in val_losses(run))  # finite, not NaN


def test_lora_adapter_loads_in_peft_and_changes_the_output(tiny_model_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run = tmp_path / "run"
    write_dataset(run)
    train(config(tiny_model_dir, run, "train.learning_rate=2e-2", "train.precision=fp32"), RunDir(run))
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    ids = torch.tensor([[1, 5, 9, 12]])
    before = base(ids).logits
    tuned = PeftModel.from_pretrained(base, run / "train" / "adapters" / "task")
    assert not torch.allclose(before, tuned(ids).logits)


def test_early_stopping_stops_and_keeps_the_best_weights(tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    write_dataset(run)
    summary = train(config(tiny_model_dir, run, "train.method=full", "train.learning_rate=0.05",
                           "train.max_steps=40", "train.eval_every=1", "train.early_stopping_patience=2",
                           "train.precision=fp32"), RunDir(run))
    m = summary["stages"][0]["metrics"]
    losses = val_losses(run)
    assert m["stopped"] == "early_stopping" and m["steps"] < 40
    assert min(losses[:-2]) <= min(losses[-2:])  # the last two evaluations did not improve
    assert m["best_val_loss"] == pytest.approx(min(losses), abs=1e-6) and m["restored_best"]


def _adapter_tensors(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "train" / "adapters" / "task" / "adapter_model.safetensors"))


def test_resume_after_interruption_reproduces_the_uninterrupted_run(tiny_model_dir, tmp_path):
    extra = ("train.learning_rate=2e-2", "train.max_steps=7", "train.save_every=3", "train.eval_every=2",
             "train.lora.dropout=0.3")  # dropout: the RNG state must be restored too
    straight = tmp_path / "straight"
    write_dataset(straight, n_train=16)
    train(config(tiny_model_dir, straight, *extra), RunDir(straight))

    broken = tmp_path / "broken"
    write_dataset(broken, n_train=16)
    cfg = config(tiny_model_dir, broken, *extra)

    def crash(stage: str, step: int) -> None:
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, RunDir(broken), on_step=crash)
    state = json.loads((broken / "train" / "checkpoints" / "task" / "state.json").read_text())
    assert state["step"] == 3
    train(cfg, RunDir(broken), resume=True)

    a, b = _adapter_tensors(straight), _adapter_tensors(broken)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    rows = lambda r: [(x["step"], x.get("loss"), x.get("val_loss")) for x in read_jsonl(r / "train" / "metrics.jsonl")]
    assert rows(straight) == rows(broken)


def test_resume_refuses_a_checkpoint_from_another_config(tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    write_dataset(run, n_train=16)

    def crash(stage: str, step: int) -> None:
        if step == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config(tiny_model_dir, run, "train.save_every=3"), RunDir(run), on_step=crash)
    with pytest.raises(TrainError, match="another config or dataset"):
        train(config(tiny_model_dir, run, "train.save_every=3", "train.lora.r=4"), RunDir(run), resume=True)


def test_nan_guard_stops_with_a_clear_message(tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    write_dataset(run, n_train=8)
    with pytest.raises(DivergedError, match="non-finite.*lower train.learning_rate"):
        train(config(tiny_model_dir, run, "train.method=full", "train.learning_rate=1e30",
                      "train.max_grad_norm=1e30", "train.precision=fp32"), RunDir(run))
