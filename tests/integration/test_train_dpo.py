"""Preference stages (dpo, kto) through TRL on top of an sft stage, on the tiny model: layered, with lineage, they
move the model towards the chosen answers (the chosen-vs-rejected log-likelihood margin grows against the sft
stage); with enough rows a validation share early-stops the stage; an interrupted stage resumes from its last
checkpoint."""

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


def _run_with_sft_data(tmp_path: Path, pairs: list[dict] = PAIRS, extra: str = "") -> RunDir:
    run = RunDir(tmp_path / "run")
    (run.root / "data").mkdir(parents=True)
    rows = "".join(json.dumps({"id": f"ex{i}", "messages": [{"role": "user", "content": f"What is rule {i % 4}?"},
                                                            {"role": "assistant", "content": FACTS[i % 4]}]}) + "\n"
                   for i in range(16))
    run.dataset_split("train").write_text(rows)
    run.feedback_preferences.parent.mkdir(parents=True)
    run.feedback_preferences.write_text("".join(json.dumps(p) + "\n" for p in pairs) + extra)
    return run


def _cfg(tiny_model_dir: Path, run: RunDir, task: str, *extra: str, epochs: float = 4, lr: float = 0.005):
    stages = json.dumps([{"name": "task", "task": "sft", "epochs": 1},
                         {"name": "prefs", "task": task, "data": "preferences", "epochs": epochs,
                          "learning_rate": lr}])
    return load_config(None, [f"model.base={tiny_model_dir}", f"project.run_dir={run.root}", f"train.stages={stages}",
                              "train.max_tokens=null", "train.precision=fp32", "train.dpo_beta=0.5", *extra])


def test_dpo_stage_on_top_of_sft_prefers_the_chosen_answers(tiny_model_dir: Path, tmp_path: Path):
    run = _run_with_sft_data(tmp_path, extra="not json\n")
    cfg = _cfg(tiny_model_dir, run, "dpo")
    summary = train(cfg, run)
    assert [s["name"] for s in summary["stages"]] == ["task", "prefs"]
    prefs = {a.name: a for a in read_adapters(run)}["prefs"]
    assert prefs.layered and [a.name for a in prefs.lineage] == ["task", "prefs"] and prefs.final
    m = prefs.meta["metrics"]
    # 4 epochs over 8 pairs, 2 a step: 16 steps (train.max_steps would only cap them)
    assert prefs.meta["task"] == "dpo" and m["pairs"] == 8 and m["steps"] == 16 and m["train_seconds"] > 0
    assert m["validation_rows"] == 0 and m["validation"] == "none: 8 questions < 20, all train"  # too few
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


def test_kto_stage_learns_from_pairs_and_unpaired_ratings(tiny_model_dir: Path, tmp_path: Path):
    # Ratings alone (a thumbs-down without a correction) are what DPO cannot use: here the rejected answer twice more.
    ratings = [{"prompt": p["prompt"], "completion": "I have no idea, sorry.", "label": False} for p in PAIRS[:2]]
    run = _run_with_sft_data(tmp_path, extra="".join(json.dumps(r) + "\n" for r in ratings)
                             + json.dumps({"prompt": "q?", "completion": "a", "label": "yes"}) + "\n")
    cfg = _cfg(tiny_model_dir, run, "kto")
    train(cfg, run)
    prefs = {a.name: a for a in read_adapters(run)}["prefs"]
    assert prefs.layered and [a.name for a in prefs.lineage] == ["task", "prefs"]
    m = prefs.meta["metrics"]
    # 8 pairs → 16 rated answers, + 2 ratings; 4 epochs of 18 rows, 2 a step: 36 steps
    assert prefs.meta["task"] == "kto" and m["rows"] == 18 and m["desirable"] == 8 and m["undesirable"] == 10
    assert m["steps"] == 36 and m["undesirable_weight"] == 1.0 and m["desirable_weight"] == 10 / 8
    report = prefs.meta["inputs"][0]
    assert report["pairs"] == 8 and report["ratings"] == 2 and report["refused"] == 1
    assert "'label' must be true" in report["refused_examples"][0]
    sft_model, tok = load_adapter(cfg.model, run.adapter_dir("task"), dtype=torch.float32)
    kto_model, _ = load_adapter(cfg.model, run.adapter_dir("prefs"), dtype=torch.float32)
    before, after = _margin(sft_model, tok, PAIRS), _margin(kto_model, tok, PAIRS)
    assert after > before + 0.5, (before, after)


def test_dpo_refuses_a_file_of_ratings_only(tiny_model_dir: Path, tmp_path: Path):
    run = _run_with_sft_data(tmp_path, pairs=[])
    run.feedback_ratings.write_text(json.dumps({"prompt": "q?", "completion": "a", "label": True}) + "\n")
    stages = json.dumps([{"name": "task", "epochs": 1}, {"name": "prefs", "task": "dpo", "data": "ratings"}])
    cfg = load_config(None, [f"model.base={tiny_model_dir}", f"project.run_dir={run.root}", f"train.stages={stages}",
                             "train.max_tokens=null"])
    with pytest.raises(DatasetFileError, match="1 unpaired ratings only — train them with task: kto"):
        train(cfg, run)


MANY = [{"prompt": [{"role": "user", "content": f"What does clause {i} say?"}], "chosen": FACTS[i % 4],
         "rejected": f"Clause {i} is unknown to me."} for i in range(24)]


def test_enough_pairs_hold_out_a_validation_share_and_stop_early(tiny_model_dir: Path, tmp_path: Path):
    run = _run_with_sft_data(tmp_path, pairs=MANY)
    # A learning rate far too high: the validation loss worsens, patience 1 stops the stage, the best is restored.
    cfg = _cfg(tiny_model_dir, run, "dpo", "train.early_stopping_patience=1", epochs=6, lr=0.5)
    train(cfg, run)
    m = {a.name: a for a in read_adapters(run)}["prefs"].meta["metrics"]
    assert m["validation_rows"] >= 2 and m["train_pairs"] == 24 - m["validation_rows"]
    assert m["validation"].startswith(f"{m['validation_rows']} rows held out")
    assert len(m["validation_losses"]) >= 2 and m["best_val_loss"] == pytest.approx(min(m["validation_losses"]),
                                                                                     abs=1e-4)
    assert m["stopped"] == "early" and m["steps"] < m["total_steps"], m
    assert m["restored_best"] is True


def test_an_interrupted_preference_stage_resumes_from_its_checkpoint(tiny_model_dir: Path, tmp_path: Path):
    run = _run_with_sft_data(tmp_path)
    cfg = _cfg(tiny_model_dir, run, "kto", "train.save_every=4")

    class Crash(RuntimeError):
        pass

    def crash_at_6(stage: str, step: int) -> None:
        if stage == "prefs" and step == 6:
            raise Crash
    with pytest.raises(Crash):
        train(cfg, run, on_step=crash_at_6)
    assert (run.stage("train") / "checkpoints" / "prefs" / "checkpoint-4").is_dir()
    steps: list[int] = []
    train(cfg, run, resume=True, on_step=lambda stage, step: steps.append(step))
    m = {a.name: a for a in read_adapters(run)}["prefs"].meta["metrics"]
    assert m["resumed_from_step"] == 4 and m["steps"] == m["total_steps"] == 32
    assert steps[0] == 5 and steps[-1] == 32  # the sft stage was complete: skipped; prefs went on from step 4
    assert not (run.stage("train") / "checkpoints" / "prefs").exists()  # removed once the adapter is saved
