"""A dpo stage through TRL on top of an sft stage, on the tiny model: layered, with lineage, and it moves the
model towards the chosen answers (the chosen-vs-rejected log-likelihood margin grows against the sft stage)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from verticalize.artifacts import RunDir, read_adapters
from verticalize.config import load_config
from verticalize.models import load_adapter
from verticalize.train import DatasetFileError, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FACTS = ["The annual fee is waived after six uses.", "Loans need proof of income and an ID.",
         "Restart the service with systemctl restart app.", "年费在刷卡六次后免收。"]
PAIRS = [{"prompt": [{"role": "user", "content": f"What is rule {i}?"}], "chosen": FACTS[i % 4],
          "rejected": "I have no idea, sorry."} for i in range(8)]


def _margin(model, tok, pairs) -> float:
    """Mean over pairs of log p(chosen) - log p(rejected), the completion tokens only."""
    total = 0.0
    for p in pairs:
        prompt = tok.apply_chat_template(p["prompt"], add_generation_prompt=True, tokenize=True, return_dict=False)
        logp = []
        for answer in (p["chosen"], p["rejected"]):
            ids = tok(answer, add_special_tokens=False)["input_ids"]
            x = torch.tensor([list(prompt) + ids])
            with torch.no_grad():
                out = torch.log_softmax(model(x).logits.float(), -1)[0]
            logp.append(sum(float(out[len(prompt) + j - 1, t]) for j, t in enumerate(ids)))
        total += logp[0] - logp[1]
    return total / len(pairs)


def test_dpo_stage_on_top_of_sft_prefers_the_chosen_answers(tiny_model_dir: Path, tmp_path: Path):
    run = RunDir(tmp_path / "run")
    (run.root / "data").mkdir(parents=True)
    rows = "".join(json.dumps({"id": f"ex{i}", "messages": [{"role": "user", "content": f"What is rule {i % 4}?"},
                                                            {"role": "assistant", "content": FACTS[i % 4]}]}) + "\n"
                   for i in range(16))
    run.dataset_split("train").write_text(rows)
    run.feedback_preferences.parent.mkdir(parents=True)
    run.feedback_preferences.write_text("".join(json.dumps(p) + "\n" for p in PAIRS) + "not json\n")
    stages = json.dumps([{"name": "task", "task": "sft", "epochs": 1},
                         {"name": "prefs", "task": "dpo", "data": "preferences", "epochs": 4,
                          "learning_rate": 0.005}])
    cfg = load_config(None, [f"model.base={tiny_model_dir}", f"project.run_dir={run.root}", f"train.stages={stages}",
                             "train.max_tokens=null", "train.precision=fp32", "train.dpo_beta=0.5"])
    summary = train(cfg, run)
    assert [s["name"] for s in summary["stages"]] == ["task", "prefs"]
    prefs = {a.name: a for a in read_adapters(run)}["prefs"]
    assert prefs.layered and [a.name for a in prefs.lineage] == ["task", "prefs"] and prefs.final
    m = prefs.meta["metrics"]
    # 4 epochs over 8 pairs, 2 a step: 16 steps (train.max_steps would only cap them)
    assert prefs.meta["task"] == "dpo" and m["pairs"] == 8 and m["steps"] == 16 and m["train_seconds"] > 0
    assert prefs.meta["inputs"][0]["refused"] == 1 and "line 9" in prefs.meta["inputs"][0]["refused_examples"][0]
    sft_model, tok = load_adapter(cfg.model, run.adapter_dir("task"), dtype=torch.float32)
    dpo_model, _ = load_adapter(cfg.model, run.adapter_dir("prefs"), dtype=torch.float32)  # parents merged in
    before, after = _margin(sft_model, tok, PAIRS), _margin(dpo_model, tok, PAIRS)
    assert after > before + 0.5, (before, after)


def test_dpo_stage_without_pairs_or_parent_is_refused_clearly(tiny_model_dir: Path, tmp_path: Path):
    run = RunDir(tmp_path / "run")
    (run.root / "data").mkdir(parents=True)
    run.dataset_split("train").write_text(json.dumps({"id": "a", "messages": [
        {"role": "user", "content": "q?"}, {"role": "assistant", "content": "a."}]}) + "\n")
    stages = json.dumps([{"name": "task"}, {"name": "prefs", "task": "dpo", "data": "preferences"}])
    cfg = load_config(None, [f"model.base={tiny_model_dir}", f"project.run_dir={run.root}", f"train.stages={stages}"])
    with pytest.raises(DatasetFileError, match="no preference pairs at .*feedback export RUN --preferences"):
        train(cfg, run)
