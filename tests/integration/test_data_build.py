"""`data build` end to end: tiny chunks.jsonl (rules generator) + seed data + user test file, via the API and CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from verticalize.artifacts import RunDir, read_jsonl, write_jsonl
from verticalize.config import load_config
from verticalize.data import build_dataset
from verticalize.data.build import DataBuildError

DOCS = {
    "credit.md": ["信用卡是指银行向个人发行的、具有消费信用和转账结算功能的支付卡。持卡人应当在到期还款日前全额还款。",
                  "第十二条 借款人不得将贷款用于股票投资、期货交易或者房地产投机。如果逾期超过90天，银行应当停止计息。"],
    "loan.md": ["A loan application must include proof of income and an identity document. The bank shall answer "
                "within 15 working days.",
                "Overdraft is a short-term credit facility that lets the account go below zero. The fee is 5% per year."],
    "ops.md": ["Incident reports must be filed within 24 hours. The on-call engineer shall restart the service with "
               "systemctl restart app.",
               "A runbook is a document that lists the steps to restore a service. Operators must not delete logs."],
    "kyc.md": ["客户身份识别是指银行在建立业务关系时核实客户身份的程序。银行应当保存客户资料至少5年。",
               "若客户拒绝提供身份证件，银行不得为其开立账户。单笔现金交易超过5万元的，应当在5个工作日内报告。"],
    "apply.md": ["申请个人贷款应当提交下列材料：\n1. 身份证件；\n2. 收入证明；\n3. 贷款用途说明。",
                 "Opening an account requires the following documents:\n- an identity card\n- proof of address\n"
                 "- a signed application form"],
}


def _write_chunks(run: RunDir) -> list[dict]:
    rows = []
    for d_i, (source, texts) in enumerate(DOCS.items()):
        for c_i, text in enumerate(texts):
            rows.append({"id": f"doc{d_i}:{c_i:04d}", "doc_id": f"doc{d_i}", "source": source, "title": "",
                         "text": text, "start": c_i * 100, "lang": "zh" if source in ("credit.md", "kyc.md") else "en"})
    write_jsonl(run.chunks, rows)
    return rows


def _seed_file(tmp_path: Path) -> Path:
    path = tmp_path / "seed.jsonl"
    rows = [{"instruction": f"Internal policy question {i}: what is the limit for product {i}?", "input": "",
             "output": f"The limit for product {i} is {i * 1000} yuan."} for i in range(10)]
    lines = [json.dumps(r, ensure_ascii=False) for r in rows] + ['{"instruction": "no output"}']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _cfg(tmp_path: Path, *overrides: str):
    return load_config(None, [f"project.run_dir={tmp_path / 'run'}", "data.generator=rules", *overrides])


def test_build_from_chunks_and_seed(tmp_path: Path):
    run = RunDir(tmp_path / "run")
    chunks = {c["id"]: c for c in _write_chunks(run)}
    seed = _seed_file(tmp_path)
    cfg = _cfg(tmp_path, f"project.seed_data=[{seed}]", "data.split=[0.6,0.2,0.2]")
    manifest = build_dataset(cfg, run, progress=False)

    splits = {s: list(read_jsonl(run.dataset_split(s))) for s in ("train", "validation", "test")}
    every = [e for rows in splits.values() for e in rows]
    synthetic = [e for e in every if e["meta"]["kind"] == "synthetic"]
    assert synthetic, "the rules generator made no example from the fixture chunks"
    for ex in synthetic:  # provenance points at real chunks of the right document
        meta = ex["meta"]
        assert meta["chunk_ids"] and all(chunks[c]["doc_id"] == meta["doc_id"] for c in meta["chunk_ids"])
        assert meta["generator"].startswith("rules") and meta["source"] in DOCS
        assert ex["messages"][0] == {"role": "user", "content": meta["question"]}
        assert ex["messages"][1] == {"role": "assistant", "content": meta["answer"]}
    # No document and no augmentation family crosses splits.
    assert manifest["doc_overlap"] == {"train/validation": 0, "train/test": 0, "validation/test": 0}
    where = {e["id"]: s for s, rows in splits.items() for e in rows}
    augmented = [e for e in every if e["meta"]["kind"] == "augmented"]
    assert counts_made(manifest) == len(augmented)
    for ex in augmented:  # augmentation runs on the training split only, so variants sit with their parents
        assert where[ex["meta"]["parent_id"]] == where[ex["id"]] == "train"
    # The test split is drawn from seed first (half of the 10 imported seed rows at most).
    assert manifest["test_source"] == "seed-first"
    assert {e["meta"]["kind"] for e in splits["test"]} >= {"seed"}
    assert sum(e["meta"]["kind"] == "seed" for e in splits["test"]) <= 5
    # The manifest accounts for everything.
    counts = manifest["counts"]
    assert counts["splits"] == {s: len(v) for s, v in splits.items()}
    assert counts["chunks"] == 10 and counts["seed_imported"] == 10
    assert manifest["seed_import"]["problems"] == ["seed.jsonl:11: missing 'output'"]
    assert sum(manifest["distillation"]["generated"].values()) >= len(synthetic)
    assert manifest["system_prompt"] == cfg.project.system_prompt
    assert not (run.stage("data") / "labels.json").exists()

    again = build_dataset(cfg, run, progress=False)  # deterministic for a seed
    assert again["counts"]["splits"] == counts["splits"]
    assert [e["id"] for e in read_jsonl(run.dataset_split("test"))] == [e["id"] for e in splits["test"]]


def test_user_test_file_overrides_and_planted_duplicate_is_decontaminated(tmp_path: Path):
    run = RunDir(tmp_path / "run")
    _write_chunks(run)
    seed = _seed_file(tmp_path)
    test_file = tmp_path / "human_test.jsonl"
    test_file.write_text("\n".join(json.dumps(r) for r in [
        {"question": "Internal policy question 3: what is the limit for product 3??", "answer": "3000 yuan"},
        {"question": "Who answers loan applications?", "answer": "The bank, within 15 working days."},
        "broken",
    ]) + "\n", encoding="utf-8")
    cfg = _cfg(tmp_path, f"project.seed_data=[{seed}]", f"project.test_set={test_file}", "data.split=[1.0,0.0,0.0]")
    manifest = build_dataset(cfg, run, progress=False)
    assert manifest["counts"]["splits"]["validation"] == 0
    train = {e["id"]: e for e in read_jsonl(run.dataset_split("train"))}
    augmented = [e for e in train.values() if e["meta"]["kind"] == "augmented"]
    assert augmented and counts_made(manifest) == len(augmented)  # list_reorder on the two list chunks
    for ex in augmented:
        parent = train[ex["meta"]["parent_id"]]
        assert parent["meta"]["generator"] == "rules:list" and ex["meta"]["doc_id"] == parent["meta"]["doc_id"]
        assert ex["meta"]["answer"] != parent["meta"]["answer"]
    test = list(read_jsonl(run.dataset_split("test")))
    assert [e["meta"]["question"] for e in test] == ["Internal policy question 3: what is the limit for product 3??",
                                                     "Who answers loan applications?"]
    assert manifest["test_source"] == "user"
    assert manifest["test_set_import"]["problems_total"] == 1
    removed = manifest["counts"]["decontamination"]
    assert removed["train"] + removed["validation"] >= 1
    planted = [e for e in manifest["decontaminated_examples"] if e["test_id"] == test[0]["id"]]
    assert len(planted) == 1
    remaining = [e["meta"]["question"] for s in ("train", "validation") for e in read_jsonl(run.dataset_split(s))]
    assert "Internal policy question 3: what is the limit for product 3?" not in remaining
    assert "Internal policy question 4: what is the limit for product 4?" in remaining


def test_unanswerable_test_questions_reach_the_test_split_only(tmp_path: Path):
    from verticalize.evaluate.testsets import load_test_set as load_eval_test_set

    run = RunDir(tmp_path / "run")
    _write_chunks(run)
    test_file = tmp_path / "human_test.jsonl"
    test_file.write_text("\n".join(json.dumps(r) for r in [
        {"question": "Who answers loan applications?", "answer": ["The bank", "the bank, within 15 working days"]},
        {"question": "Who founded the bank?", "answer": []},
        {"question": "What is the bank's share price?", "answer": "", "answerable": False},
    ]) + "\n", encoding="utf-8")
    seed = tmp_path / "seed.jsonl"  # an unanswerable row in *training* data is refused, not trained on
    seed.write_text(json.dumps({"question": "Who founded the bank?", "answer": []}) + "\n"
                    + json.dumps({"question": "What is the overdraft fee?", "answer": ["5% per year"]}) + "\n",
                    encoding="utf-8")
    cfg = _cfg(tmp_path, f"project.test_set={test_file}", f"project.seed_data=[{seed}]")
    manifest = build_dataset(cfg, run, progress=False)
    test = list(read_jsonl(run.dataset_split("test")))
    assert [(e["meta"]["question"], e["meta"]["answer"], e["meta"].get("answerable", True)) for e in test] == [
        ("Who answers loan applications?", "The bank", True),
        ("Who founded the bank?", "", False),
        ("What is the bank's share price?", "", False)]
    assert test[0]["meta"]["answers"] == ["The bank", "the bank, within 15 working days"]
    assert manifest["test_set_import"]["problems_total"] == 0
    assert any("unanswerable question" in p for p in manifest["seed_import"]["problems"])
    trained = [e for s in ("train", "validation") for e in read_jsonl(run.dataset_split(s))]
    questions = {e["meta"]["question"] for e in trained}
    assert trained and all(e["meta"]["answer"].strip() for e in trained)
    assert "What is the overdraft fee?" in questions
    assert not questions & {"Who founded the bank?", "What is the bank's share price?"}
    # The evaluation stage reads the written test split back with the unanswerable questions marked.
    ts = load_eval_test_set(run)
    assert [(e.answerable, e.references) for e in ts.examples] == [
        (True, ["The bank", "the bank, within 15 working days"]), (False, []), (False, [])]


def test_seed_only_classification_writes_labels(tmp_path: Path):
    run = RunDir(tmp_path / "run")
    seed = tmp_path / "tickets.csv"
    rows = ["text,label"] + [f"ticket {i} about {'billing' if i % 2 else 'login'} problem number {i},"
                             f"{'billing' if i % 2 else 'login'}" for i in range(20)] + ["odd ticket,spam"]
    seed.write_text("\n".join(rows) + "\n", encoding="utf-8")
    cfg = _cfg(tmp_path, f"project.seed_data=[{seed}]", "data.labels=[billing,login]")
    manifest = build_dataset(cfg, run, progress=False)
    assert manifest["task"] == "classification" and manifest["stratified_by_label"] is True
    assert manifest["counts"]["filter_drops"] == {"unknown_label": 1}
    labels = json.loads((run.stage("data") / "labels.json").read_text(encoding="utf-8"))
    assert labels["labels"] == ["billing", "login"] and sum(labels["counts"].values()) == 20
    by_split = labels["by_split"]   # stratified by label: both labels are learned and tested
    assert all(by_split[s][label] >= 1 for s in ("train", "test") for label in ("billing", "login"))
    assert {s: sum(by_split[s].values()) for s in by_split} == manifest["counts"]["splits"]
    assert manifest["distillation"] == {"skipped": "no chunks"}


def counts_made(manifest: dict) -> int:
    return manifest["counts"]["augmentation"]["made"] - sum(
        manifest["counts"]["augmentation"]["dropped_as_duplicates"].values())


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "verticalize", *args], capture_output=True, text=True)


def _invoke(*args: str):
    """The real CLI app, in-process (a subprocess per call costs seconds of imports)."""
    from typer.testing import CliRunner

    from verticalize.cli import app

    return CliRunner().invoke(app, list(args))


def test_cli_build_stats_export_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for var in ("VERTICALIZE_TEACHER_BASE_URL", "VERTICALIZE_TEACHER_MODEL"):
        monkeypatch.delenv(var, raising=False)
    seed = _seed_file(tmp_path)
    run_dir = tmp_path / "clirun"
    r = _cli("data", "build", "--run", str(run_dir), "--set", f"project.seed_data=[{seed}]")
    assert r.returncode == 0, r.stderr
    assert "refused seed row seed.jsonl:11: missing 'output'" in " ".join(r.stderr.split())
    assert "dataset (qa): train" in r.stdout
    r = _invoke("data", "stats", str(run_dir), "--json")
    assert r.exit_code == 0, r.stderr
    stats = json.loads(r.stdout)
    assert sum(stats["splits"].values()) == 10 and stats["by_generator"] == {"seed:alpaca": 10}
    r = _invoke("data", "stats", str(run_dir))
    assert r.exit_code == 0 and "examples by split and kind" in r.stdout and "knowledge-base quality" in r.stdout
    r = _invoke("data", "export", str(run_dir), "--format", "llamafactory", "--out", str(tmp_path / "lf"))
    assert r.exit_code == 0, r.stderr
    info = json.loads((tmp_path / "lf" / "dataset_info.json").read_text(encoding="utf-8"))
    assert info["verticalize_train"]["file_name"] == "train.jsonl"
    # Bad input: one clear line, exit 2, no traceback.
    chunk_run = RunDir(tmp_path / "with-chunks")
    _write_chunks(chunk_run)
    for args, message in [
        (("data", "build", "--run", str(tmp_path / "empty")), "nothing to build a dataset from"),
        (("data", "build", "--run", str(tmp_path / "x"), "--set", "project.seed_data=[/nope.jsonl]"),
         "seed data file not found"),
        (("data", "build", "--run", str(tmp_path / "x"), "--set", "data.split=[0.5,0.5,0.5]"),
         "shares must add up to 1"),
        (("data", "build", "--run", str(tmp_path / "x"), "--strict", "--set", f"project.seed_data=[{seed}]"),
         "--strict: 1 input row(s) refused, e.g. seed.jsonl:11: missing 'output'"),
        (("data", "build", "--run", str(chunk_run.root), "--set", "data.generator=llm"),
         "the llm teacher needs data.teacher.base_url and data.teacher.model"),
        (("data", "stats", str(tmp_path / "empty")), "run `verticalize data build` first"),
        (("data", "export", str(run_dir), "--format", "csv", "--out", str(tmp_path / "o")), "unknown format 'csv'"),
    ]:
        r = _invoke(*args)
        assert r.exit_code == 2, (args, r.output)
        one_line = " ".join(r.stderr.split())  # the console wraps long lines
        assert message in one_line and "Traceback" not in r.stderr, r.stderr


def test_no_input_is_a_clear_error(tmp_path: Path):
    with pytest.raises(DataBuildError, match="Run `verticalize ingest`"):
        build_dataset(_cfg(tmp_path), RunDir(tmp_path / "run"), progress=False)


CMRC = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cmrc2018" / "cmrc2018_trial.json"


@pytest.mark.skipif(not CMRC.is_file(), reason="CMRC 2018 trial set not present")
def test_cmrc2018_passages_as_chunks_and_human_questions_as_test_set(tmp_path: Path):
    squad = json.loads(CMRC.read_text(encoding="utf-8"))
    run = RunDir(tmp_path / "run")
    write_jsonl(run.chunks, [{"id": f"{p['id']}:0000", "doc_id": p["id"], "source": p["id"], "title": d.get("title", ""),
                              "text": p["context"], "start": 0, "lang": "zh"}
                             for d in squad["data"] for p in d["paragraphs"]])
    cfg = _cfg(tmp_path, f"project.test_set={CMRC}")
    manifest = build_dataset(cfg, run, progress=False)
    counts = manifest["counts"]
    assert counts["chunks"] == 256 and counts["splits"]["test"] == 1000  # 1,002 questions, 2 of them empty
    assert manifest["test_set_import"]["problems_total"] == 2
    assert counts["splits"]["train"] > 250 and counts["by_kind"]["train"] == {"synthetic": counts["splits"]["train"]}
    # A rule question that is also a human test question ("什么是标准杆数？") is removed from training.
    assert counts["decontamination"]["train"] + counts["decontamination"]["validation"] >= 1
    test_questions = {e["meta"]["question"] for e in read_jsonl(run.dataset_split("test"))}
    assert not test_questions & {e["meta"]["question"] for e in read_jsonl(run.dataset_split("train"))}


class _SloppyGenerator:
    """A generator with a bug: one good pair, one without an answer, one with an unknown kind."""

    name = "sloppy"

    def generate(self, chunks):
        from verticalize.data.schema import make_example

        for chunk in chunks:
            yield make_example("What does the bank answer within?", "within 15 working days", kind="synthetic",
                               generator="sloppy:x", chunk=chunk)
            yield make_example("Empty?", "", kind="synthetic", generator="sloppy:x", chunk=chunk)
            bad = make_example("Kind?", "The bank shall answer", kind="synthetic", generator="sloppy:x",
                               chunk=chunk)
            bad["meta"]["kind"] = "invented"
            yield bad


def test_distil_refuses_malformed_generator_output_with_reasons(tmp_path: Path):
    from verticalize.data.build import distil

    chunk = {"id": "d1:0000", "doc_id": "d1", "source": "loan.md", "title": "",
             "text": "The bank shall answer within 15 working days.", "start": 0, "lang": "en"}
    kept, report = distil([chunk], _cfg(tmp_path), generators=[_SloppyGenerator()])
    assert [e["meta"]["answer"] for e in kept] == ["within 15 working days"]
    assert report["generated"] == {"sloppy": 3}
    assert report["malformed"] == {"sloppy: empty question or answer": 1,
                                   "sloppy: meta.kind must be one of seed, synthetic, augmented, got 'invented'": 1}
