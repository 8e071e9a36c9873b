"""`verticalize runs list|compare`: the versions of a run and two ladders rung by rung (constructed artifacts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from verticalize.artifacts import RunDir, write_json
from verticalize.errors import UserError
from verticalize.evaluate.compare import compare_runs, list_runs


def _ladder(run: RunDir, test_file: Path, rungs: dict, recommended: str) -> None:
    write_json(run.ladder, {"task": "qa", "test_set": {"kind": "user", "path": str(test_file), "n": 2},
                            "rungs": rungs, "recommendation": {"rung": recommended}})


@pytest.fixture()
def family(tmp_path: Path) -> tuple[RunDir, RunDir]:
    test_file = tmp_path / "test.jsonl"
    test_file.write_text('{"question": "q1", "answer": "a"}\n{"question": "q2", "answer": "b"}\n')
    v1, v2 = RunDir(tmp_path / "runs" / "bank"), RunDir(tmp_path / "runs" / "bank.v2")
    _ladder(v1, test_file, {"prompt": {"f1": 0.2, "p99_latency_ms": 900.0},
                            "peft": {"f1": 0.5, "general_regression": 0.05, "p99_latency_ms": 1000.0}}, "peft")
    _ladder(v2, test_file, {"prompt": {"f1": 0.2, "p99_latency_ms": 950.0},
                            "peft": {"f1": 0.6, "general_regression": 0.15, "p99_latency_ms": 800.0}}, "peft")
    write_json(v1.manifest("train"), {"stage": "train"})
    write_json(v2.manifest("iteration"), {"stage": "iteration", "source": str(v1.root.resolve()), "version": 2,
                                          "counts": {"exported": 7}, "complete": True})
    return v1, v2


def test_compare_says_what_improved_and_what_regressed_in_each_metrics_direction(family):
    v1, v2 = family
    result = compare_runs(v1.root, v2.root)
    assert result["same_test_set"] is True
    peft = result["rungs"]["peft"]
    assert peft["f1"] == {"a": 0.5, "b": 0.6, "delta": pytest.approx(0.1), "change": "improved"}
    assert peft["general_regression"]["change"] == "regressed"   # it forgets more: lower is better
    assert peft["p99_latency_ms"]["change"] == "improved"        # faster
    assert result["rungs"]["prompt"]["f1"]["change"] == "same"
    assert set(result["improved"]) == {"peft:f1", "peft:p99_latency_ms"}
    assert set(result["regressed"]) == {"peft:general_regression", "prompt:p99_latency_ms"}


def test_compare_flags_ladders_measured_on_other_test_sets(family, tmp_path: Path):
    v1, v2 = family
    ladder = json.loads(v2.ladder.read_text())
    other = tmp_path / "other.jsonl"
    other.write_text('{"question": "q3", "answer": "c"}\n{"question": "q4", "answer": "d"}\n')
    ladder["test_set"]["path"] = str(other)
    write_json(v2.ladder, ladder)
    assert compare_runs(v1.root, v2.root)["same_test_set"] is False
    with pytest.raises(UserError, match="no ladder at .*nowhere"):
        compare_runs(v1.root, tmp_path / "nowhere")


def test_list_and_the_cli(family):
    v1, v2 = family
    rows = list_runs(v2.root)
    assert [(r["version"], r["trained"], r["best_rung"], r["best_value"]) for r in rows] == [
        (1, True, "peft", 0.5), (2, False, "peft", 0.6)]
    assert rows[1]["source"] == str(v1.root.resolve()) and rows[1]["feedback_examples"] == 7
    done = subprocess.run([sys.executable, "-m", "verticalize", "runs", "compare", str(v1.root), str(v2.root),
                           "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rungs"]["peft"]["f1"]["change"] == "improved"
    listed = subprocess.run([sys.executable, "-m", "verticalize", "runs", "list", str(v1.root)],
                            capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    assert listed.returncode == 0 and "bank.v2" in listed.stdout and "peft" in listed.stdout
