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


def test_the_report_of_an_iterated_version_compares_it_with_the_previous_one(family):
    from verticalize.evaluate.report import write_report

    v1, v2 = family
    html = write_report(v2).read_text(encoding="utf-8")
    assert "Compared with the previous version" in html and f"from <b>{v1.root.resolve()}</b>" in html
    assert "exported 7" in html
    row = html[html.index("<td>peft</td><td>f1</td>"):]
    row = row[:row.index("</tr>")]
    assert ">0.500<" in row and ">0.600<" in row and ">0.100<" in row and "improved" in row
    assert "Improved: 2; regressed: 2 (prompt:p99_latency_ms, peft:general_regression)" in html
    assert "different test sets" not in html
    assert "Compared with the previous version" not in write_report(v1).read_text(encoding="utf-8")


def test_the_report_shows_a_preference_stage_with_its_share(tmp_path):
    from verticalize.artifacts import ADAPTER_META
    from verticalize.evaluate.report import write_report

    run = RunDir(tmp_path / "run")
    for name, meta in (("task", {"task": "sft", "inputs": [{"kept": 90}], "metrics": {}}),
                       ("prefs", {"task": "kto", "parent": "task", "inputs": [{"kept": 10}],
                                  "metrics": {"rows": 10, "desirable": 4, "undesirable": 6, "steps": 15,
                                              "stopped": "early", "validation": "2 rows held out",
                                              "reward_margin": 1.25}})):
        write_json(run.adapter_dir(name) / ADAPTER_META, {"name": name, "method": "lora", **meta})
    html = write_report(run).read_text(encoding="utf-8")
    row = html[html.index("<td>prefs</td><td>kto</td>"):]
    row = row[:row.index("</tr>")]
    assert "10 rated answers (4 desirable, 6 undesirable)" in row and ">0.100<" in row and ">early<" in row
    assert ">1.250<" in row
