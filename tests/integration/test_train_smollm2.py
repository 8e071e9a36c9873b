"""LoRA on the real SmolLM2-135M-Instruct (the embedded default): a few steps, then the adapter generates."""

from __future__ import annotations

import json

import pytest
import torch

from verticalize.artifacts import RunDir, read_jsonl
from verticalize.config import load_config
from verticalize.train import train

pytestmark = pytest.mark.slow

QA = [("What is the annual fee rule?", "The annual fee is waived after six card uses a year."),
      ("When does interest stop?", "Interest stops once a loan is more than ninety days overdue."),
      ("What must a loan application include?", "Proof of income and a valid identity document."),
      ("How is the service restarted?", "Run systemctl restart app, then check the logs.")]


def test_lora_on_smollm2_trains_and_generates(tmp_path):
    from verticalize.models import load_adapter

    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    rows = lambda n: "".join(json.dumps({"id": f"q{i}", "messages": [
        {"role": "user", "content": QA[i % 4][0]}, {"role": "assistant", "content": QA[i % 4][1]}]}) + "\n"
        for i in range(n))
    (run / "data" / "train.jsonl").write_text(rows(16))
    (run / "data" / "validation.jsonl").write_text(rows(4))
    cfg = load_config(None, ["model.base=smollm2-135m-instruct", f"project.run_dir={run}", "train.max_steps=4",
                             "train.learning_rate=1e-3", "train.batch_tokens=512", "train.eval_every=2",
                             "train.warmup_ratio=0"])
    stage = train(cfg, RunDir(run))["stages"][0]
    val = [r["val_loss"] for r in read_jsonl(run / "train" / "metrics.jsonl") if "val_loss" in r]
    assert val[-1] < val[0], val
    assert stage["trainable_params"] == 460_800  # r=8 on q_proj (576→576) and v_proj (576→192), 30 layers
    assert 0.001 < stage["trainable_share"] < 0.01

    model, tok = load_adapter(cfg.model, run / "train" / "adapters" / "task", dtype=torch.float32)
    msgs = [{"role": "system", "content": cfg.project.system_prompt}, {"role": "user", "content": QA[1][0]}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=16, do_sample=False)
    answer = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert answer.strip(), "the tuned model generated nothing"
