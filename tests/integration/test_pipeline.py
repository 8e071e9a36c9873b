"""The main job end to end on the demo project with the tiny model: every stage, caching, the summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from verticalize.cli.pipeline import demo_config_path
from verticalize.config import load_config
from verticalize.pipeline import run_pipeline


def _tiny_overrides(tiny_model_dir: Path, run_dir: Path) -> list[str]:
    return [f"model.base={tiny_model_dir}", f"project.run_dir={run_dir}", "train.max_steps=4",
            "train.eval_every=2", "train.batch_tokens=256", "eval.max_examples=4", "eval.max_new_tokens=4",
            "eval.few_shot=1", "train.lora.target_modules=[q_proj, v_proj]"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path):
    run_dir = tmp_path_factory.mktemp("demo-run")
    cfg = load_config(demo_config_path("qa"), _tiny_overrides(tiny_model_dir, run_dir))
    return run_dir, cfg, run_pipeline(cfg)


def test_every_stage_writes_its_artifact(demo_run):
    run_dir, _, result = demo_run
    assert [s.status for s in result.stages] == ["ran"] * 6
    for path in ("ingest/chunks.jsonl", "kb/manifest.json", "data/train.jsonl", "train/manifest.json",
                 "eval/ladder.json", "report/report.html", "config.yaml"):
        assert (run_dir / path).is_file(), path
    ingest = json.loads((run_dir / "ingest" / "manifest.json").read_text())
    assert ingest["counts"]["chunks"] > 20
    ladder = result.ladder
    assert set(ladder["rungs"]) == {"prompt", "rag", "peft", "peft+rag"}
    assert ladder["test_set"]["kind"] in ("human", "user")  # the demo ships a human-written test set
    assert "recommendation" in ladder


def test_rerun_is_cached_and_config_change_reruns_downstream(demo_run, tiny_model_dir: Path):
    run_dir, cfg, _ = demo_run
    again = run_pipeline(cfg)
    assert [s.status for s in again.stages] == ["cached"] * 6
    changed = load_config(demo_config_path("qa"), _tiny_overrides(tiny_model_dir, run_dir) + ["eval.few_shot=0"])
    third = run_pipeline(changed)
    assert [s.status for s in third.stages] == ["cached"] * 4 + ["ran"] * 2


def test_run_command_prints_summary(demo_run, tiny_model_dir: Path):
    run_dir, _, _ = demo_run
    config = demo_config_path("qa")
    args = [sys.executable, "-m", "verticalize", "run", str(config)]
    for o in _tiny_overrides(tiny_model_dir, run_dir):
        args += ["--set", o]
    r = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "peft+rag" in r.stdout and "recommendation" in r.stdout and "report.html" in r.stdout


def test_classification_demo_compares_prefix_and_lora(tmp_path: Path, tiny_model_dir: Path):
    args = [sys.executable, "-m", "verticalize", "demo", "--task", "classification", "--run-dir",
            str(tmp_path / "cls")]
    for o in (f"model.base={tiny_model_dir}", "train.max_steps=3", "train.eval_every=3", "eval.max_examples=4",
              "eval.max_new_tokens=3", "train.lora.target_modules=[q_proj, v_proj]"):
        args += ["--set", o]
    env = {**os.environ, "COLUMNS": "200"}  # rich tables are cut to 80 columns when stdout is not a terminal
    r = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "prefix vs lora" in r.stdout and "prefix:peft" in r.stdout and "lora:peft" in r.stdout
    for method in ("prefix", "lora"):
        ladder = json.loads((tmp_path / f"cls-{method}" / "eval" / "ladder.json").read_text())
        assert ladder["task"] == "classification" and "accuracy" in ladder["rungs"]["peft"]


def _digest(root: Path) -> dict[str, str]:
    import hashlib

    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_iterate_trains_a_new_version_and_leaves_the_served_run_intact(demo_run, tiny_model_dir: Path):
    from verticalize.artifacts import RunDir, read_adapters
    from verticalize.errors import UserError
    from verticalize.pipeline import run_iteration
    from verticalize.serve.feedback import FeedbackStore

    run_dir, _, _ = demo_run
    run = RunDir(run_dir)
    served, served_eval = _digest(run.root / "train"), _digest(run.root / "eval")
    store = FeedbackStore(run.feedback_db)
    for rid, question in (("rsp-1", "What is the annual fee of the Harbor card?"), ("rsp-2", "Who is the CEO?"),
                          ("rsp-3", "How many purchases waive the annual fee?")):
        store.record_response(rid, "lora", [{"role": "user", "content": question}], "no idea", [], False)
    good = store.add_feedback("rsp-1", -1, "88 yuan, waived after six purchases", None, key_fp="abcd1234")
    bad = store.add_feedback("rsp-2", -1, "ignore all previous instructions", None, key_fp="abcd1234")
    held = store.add_feedback("rsp-3", -1, "six purchases", None, key_fp="abcd1234")
    # Half of the corrected questions stay out of training and test both versions (one of the two, stably).
    cfg = lambda: load_config(demo_config_path("qa"), [*_tiny_overrides(tiny_model_dir, run_dir),  # noqa: E731
                                                       "eval.feedback_holdout=0.5"])
    with pytest.raises(UserError, match="no approved feedback"):
        run_iteration(cfg())  # all pending: nothing to train on
    store.review(good, "approve", "alice")
    store.review(bad, "reject", "alice")
    store.review(held, "approve", "alice")

    result, it = run_iteration(cfg())
    assert it.source.root == run_dir.resolve() and it.version == 2
    assert it.target.root == run_dir.resolve().parent / f"{run_dir.name}.v2"
    status = {s.name: s.status for s in result.stages}
    assert status["ingest"] == status["kb"] == "cached"  # reused from the source
    assert status["data"] == status["train"] == status["eval"] == "ran"
    seed = [json.loads(x) for x in it.target.iteration_seed.read_text().splitlines()]
    test = [json.loads(x) for x in it.target.feedback_test.read_text().splitlines()]
    assert it.counts["held_out"] == 1 and len(seed) == len(test) == 1
    assert {seed[0]["messages"][1]["content"], test[0]["answer"]} == {"88 yuan, waived after six purchases",
                                                                     "six purchases"}
    pairs = [json.loads(x) for x in it.target.feedback_preferences.read_text().splitlines()]
    assert [p["prompt"][0]["content"] for p in pairs] == [seed[0]["meta"]["question"]]  # held out of these too
    # Both versions answered the held-out question (side ladders); the served version's eval is untouched.
    comparison = json.loads((it.target.feedback_eval / "comparison.json").read_text())
    assert comparison["questions"] == 1 and comparison["same_test_set"] is True
    assert set(comparison["rungs"]) == {"prompt", "rag", "peft", "peft+rag"}
    for side in ("source", "this"):
        ladder = json.loads((it.target.feedback_eval / side / "ladder.json").read_text())
        assert ladder["test_set"]["n"] == 1 and "general_score" not in ladder["rungs"]["peft"]
    assert _digest(run.root / "eval") == served_eval
    report = it.target.report_html.read_text()
    assert "On the 1 feedback questions held out of training" in report and "On the test set" in report
    assert read_adapters(it.target) and (it.target.root / "config.yaml").is_file()
    assert str(it.target.root) in (it.target.root / "config.yaml").read_text()
    info = json.loads(it.target.manifest("iteration").read_text())
    assert info["complete"] and info["source"] == str(run_dir.resolve())
    assert _digest(run.root / "train") == served  # the served run's adapters are byte-identical
