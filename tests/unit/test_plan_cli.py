"""`verticalize estimate` and `verticalize advise` through the real CLI."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from verticalize.cli import app

runner = CliRunner()


def test_estimate_compare_prints_the_seed_table():
    res = runner.invoke(app, ["estimate", "--compare", "--set", "plan.device=a100-80g", "--set",
                              "model.base=qwen2.5-7b-instruct", "--set", "plan.price_per_device_hour=2",
                              "--tokens", "3000000"])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "method lora" in out and "a100-80g" in out and "fits" in out
    table = out.split("comparison (same setting):")[1]
    rows = {line.split()[0]: line.split() for line in table.splitlines() if line[:6].strip() in
            ("full", "lora", "qlora", "prefix")}
    assert set(rows) == {"full", "lora", "qlora", "prefix"}
    assert rows["full"][2] == "100.000%" and rows["full"][6] == "no"      # 131 GiB does not fit in 80 GB
    assert rows["lora"][6] == "yes"


def test_estimate_json_and_method_option():
    res = runner.invoke(app, ["estimate", "--json", "--method", "full", "--set", "plan.device=h100-80g",
                              "--set", "model.base=smollm2-135m-instruct", "--tokens", "1000"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)["estimate"]
    assert data["setting"]["method"] == "full"
    assert data["params"]["trainable_share"] == 1.0
    assert data["time"]["tokens"] == 1000 and data["fits"] is True


def test_estimate_bad_input_is_one_clear_line():
    res = runner.invoke(app, ["estimate", "--set", "model.base=no-such-model"])
    assert res.exit_code == 2
    assert "neither in the catalog" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["estimate", "--method", "lorra"])
    assert res.exit_code == 2 and "train.method" in res.output


def test_advise_from_flags_and_facts_file(tmp_path):
    res = runner.invoke(app, ["advise", "--doc-pages", "400", "--labelled", "40", "--changes-often"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("recommended route: rag")
    facts = tmp_path / "facts.yaml"
    facts.write_text("task: classification\nlabelled_examples: 3000\ncompute: 1xa100-80g\ndoc_tokens: 0\n",
                     encoding="utf-8")
    res = runner.invoke(app, ["advise", "--facts", str(facts), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["route"] == "peft"


def test_advise_reads_the_ladder_of_a_run(tmp_path):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "ladder.json").write_text(json.dumps({
        "rungs": {"prompt": {"f1": 0.1}, "rag": {"f1": 0.2}, "peft": {"f1": 0.6}, "peft+rag": {"f1": 0.62}},
        "gates": [{"metric": "f1", "op": ">=", "threshold": 0.5}],
        "recommendation": {"rung": "peft", "passes": True, "reason": "cheapest rung passing all 1 gate(s)"}}))
    res = runner.invoke(app, ["advise", "--doc-pages", "400", "--labelled", "40", "--run", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("recommended route: peft  (refined by measured ladder results)")
    res = runner.invoke(app, ["advise", "--run", str(tmp_path / "missing")])
    assert res.exit_code == 0 and "no ladder results at" in res.output


def test_advise_bad_facts_exit_2(tmp_path):
    bad = tmp_path / "facts.yaml"
    bad.write_text("labeled: 3\n", encoding="utf-8")
    res = runner.invoke(app, ["advise", "--facts", str(bad)])
    assert res.exit_code == 2 and "unknown fact 'labeled'" in res.output
    res = runner.invoke(app, ["advise", "--task", "poetry"])
    assert res.exit_code == 2 and "fact 'task'" in res.output


def test_advise_takes_task_model_size_and_run_dir_from_a_project_config(tmp_path):
    run = tmp_path / "runs"
    project = tmp_path / "project.yaml"
    project.write_text(f"project:\n  run_dir: {run}\ndata:\n  task: classification\n"
                       "model:\n  base: qwen2.5-7b-instruct\n", encoding="utf-8")
    res = runner.invoke(app, ["advise", "--config", str(project), "--labelled", "800", "--compute", "cpu", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["facts"]["task"] == "classification"
    assert data["facts"]["model_params"] == 7_615_616_512
    assert any(f"no ladder results at {run}" in n for n in data["notes"])
