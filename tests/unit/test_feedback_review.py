"""The feedback review queue: states, migration of an older store, attribution, export of approved rows only, the
`feedback review` command, run versions, and the switchable engine a reload uses."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from verticalize.artifacts import RunDir, next_run_version, run_family, run_versions
from verticalize.cli import app
from verticalize.serve.feedback import FeedbackStore, export_seed_examples, fingerprint_key
from verticalize.serve.reload import SwitchableEngine

KEY = "sk-very-secret-key-42"


def _store(tmp_path: Path) -> FeedbackStore:
    store = FeedbackStore(RunDir(tmp_path / "run").feedback_db)
    for i in range(4):
        store.record_response(f"r{i}", "task", [{"role": "user", "content": f"question {i}?"}], f"answer {i}", [],
                              False)
    return store


def test_new_feedback_is_pending_and_reviews_are_recorded(tmp_path: Path):
    store = _store(tmp_path)
    fid = store.add_feedback("r0", -1, "right answer 0", "was wrong", key_fp=fingerprint_key(KEY))
    row = store.get(fid)
    assert row["status"] == "pending" and row["reviewer"] is None and row["reviewed_at"] is None
    before = time.time()
    row = store.review(fid, "approve", "alice", "checked against the rules")
    assert row["status"] == "approved" and row["reviewer"] == "alice"
    assert row["review_note"] == "checked against the rules" and row["reviewed_at"] >= before
    row = store.review(fid, "reject", "bob")  # a later review replaces the earlier one
    assert row["status"] == "rejected" and row["reviewer"] == "bob" and row["review_note"] is None
    assert [r["id"] for r in store.rows("rejected")] == [fid] and store.rows("pending") == []
    assert store.counts()["rejected"] == 1
    with pytest.raises(KeyError):
        store.review(999, "approve", "alice")
    with pytest.raises(ValueError):
        store.review(fid, "maybe", "alice")
    with pytest.raises(ValueError):
        store.rows("unknown")


def test_an_older_store_is_migrated_in_place_keeping_its_rows(tmp_path: Path):
    db = tmp_path / "feedback.sqlite"
    conn = sqlite3.connect(db)  # the schema before the review queue
    conn.executescript("""
        CREATE TABLE responses (id TEXT PRIMARY KEY, created REAL NOT NULL, model TEXT NOT NULL, rag INTEGER NOT NULL,
          request TEXT NOT NULL, response TEXT NOT NULL, sources TEXT NOT NULL);
        CREATE TABLE feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, response_id TEXT NOT NULL REFERENCES responses(id),
          created REAL NOT NULL, rating INTEGER NOT NULL, correction TEXT, comment TEXT);
    """)
    conn.execute("INSERT INTO responses VALUES ('old1', 1.0, 'task', 0, ?, 'old answer', '[]')",
                 (json.dumps([{"role": "user", "content": "old question?"}]),))
    conn.execute("INSERT INTO feedback (response_id, created, rating, correction, comment) "
                 "VALUES ('old1', 2.0, -1, 'old correction', 'c')")
    conn.commit()
    conn.close()
    store = FeedbackStore(db)
    rows = store.rows()
    assert len(rows) == 1 and rows[0]["correction"] == "old correction" and rows[0]["comment"] == "c"
    assert rows[0]["status"] == "pending" and rows[0]["key_fingerprint"] is None  # never reviewed: pending
    store.review(rows[0]["id"], "approve", "alice")
    again = FeedbackStore(db)  # opening a migrated store again changes nothing
    assert again.rows()[0]["status"] == "approved" and len(again.rows()) == 1
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == 2


def test_only_approved_feedback_is_exported(tmp_path: Path):
    store = _store(tmp_path)
    approved = store.add_feedback("r0", -1, "corrected 0", None)
    store.add_feedback("r1", -1, "corrected 1 (never reviewed)", None)
    rejected = store.add_feedback("r2", -1, "corrected 2 (a bad correction)", None)
    as_is = store.add_feedback("r3", 5, None, "good")
    store.review(approved, "approve", "alice")
    store.review(rejected, "reject", "alice")
    store.review(as_is, "approve", "alice")
    out = tmp_path / "seed.jsonl"
    counts = export_seed_examples(store, out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    answers = {r["meta"]["question"]: r["messages"][1]["content"] for r in rows}
    assert answers == {"question 0?": "corrected 0", "question 3?": "answer 3"}
    assert counts["exported"] == 2 and counts["pending"] == 1 and counts["rejected"] == 1
    assert all(r["meta"]["reviewer"] == "alice" and r["meta"]["kind"] == "seed" for r in rows)


def test_the_key_fingerprint_is_stored_never_the_key(tmp_path: Path):
    store = _store(tmp_path)
    fp = fingerprint_key(KEY)
    assert fp == hashlib.sha256(KEY.encode()).hexdigest()[:8]
    fid = store.add_feedback("r0", 1, "fine", None, key_fp=fp)
    assert store.get(fid)["key_fingerprint"] == fp
    del store
    for f in (tmp_path / "run" / "feedback").iterdir():  # the db and its WAL
        assert KEY.encode() not in f.read_bytes()


def test_feedback_review_command(tmp_path: Path):
    store = _store(tmp_path)
    fp = fingerprint_key(KEY)
    ids = [store.add_feedback(f"r{i}", -1, f"fix {i}", None, key_fp=fp) for i in range(3)]
    run = str(tmp_path / "run")
    runner = CliRunner()
    listed = runner.invoke(app, ["feedback", "review", run], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    assert fp in listed.output and "3 pending" in listed.output
    bad = runner.invoke(app, ["feedback", "review", run, "--approve", f"{ids[0]},999"])
    assert bad.exit_code == 2 and "999" in bad.output
    assert [r["status"] for r in store.rows()] == ["pending"] * 3  # nothing changed on a wrong id
    done = runner.invoke(app, ["feedback", "review", run, "--approve", str(ids[0]), "--approve", str(ids[1]),
                               "--reject", str(ids[2]), "--reviewer", "carol", "--note", "ok"])
    assert done.exit_code == 0, done.output
    rows = {r["id"]: r for r in store.rows()}
    assert [rows[i]["status"] for i in ids] == ["approved", "approved", "rejected"]
    assert all(rows[i]["reviewer"] == "carol" and rows[i]["review_note"] == "ok" for i in ids)
    exported = runner.invoke(app, ["feedback", "export", run])
    assert exported.exit_code == 0 and "exported 2 examples" in exported.output
    assert len(RunDir(run).feedback_seed.read_text().splitlines()) == 2


def test_feedback_review_interactively(tmp_path: Path):
    store = _store(tmp_path)
    ids = [store.add_feedback(f"r{i}", -1, f"fix {i}", None) for i in range(3)]
    r = CliRunner().invoke(app, ["feedback", "review", str(tmp_path / "run"), "-i", "--reviewer", "dan"],
                           input="a\nr\nq\n")
    assert r.exit_code == 0, r.output
    assert [store.get(i)["status"] for i in ids] == ["approved", "rejected", "pending"]


def test_run_versions(tmp_path: Path):
    base = tmp_path / "runs" / "demo"
    base.mkdir(parents=True)
    assert run_family(base) == (base.parent.resolve(), "demo", 1)
    assert next_run_version(base) == base.parent.resolve() / "demo.v2"
    (base.parent / "demo.v2").mkdir()
    (base.parent / "demo.v3").mkdir()
    (base.parent / "demo-other.v4").mkdir()  # another family
    assert [v for v, _ in run_versions(base)] == [1, 2, 3]
    assert next_run_version(base) == base.parent.resolve() / "demo.v4"
    assert run_family(base.parent / "demo.v3")[1:] == ("demo", 3)
    assert run_family(tmp_path / "x.v1")[1:] == ("x.v1", 1)  # .v1 is not a version suffix: version 1 has none


class _SlowEngine:
    def __init__(self, name: str, adapters: list[str], gate: threading.Event | None = None):
        self.base_name, self.adapters, self.gate, self.closed = "base", adapters, gate, False
        self.name = name

    def model_names(self) -> list[str]:
        return [self.base_name, *self.adapters]

    def count_prompt_tokens(self, req) -> int:
        return 1

    def generate(self, req, on_text=None, cancel=None):
        if self.gate is not None:
            assert self.gate.wait(10)
        return f"{self.name}:{req.model}"

    def close(self) -> None:
        self.closed = True


def test_switchable_engine_lets_a_running_generation_finish_on_the_old_engine():
    from verticalize.engine import GenerationRequest
    from verticalize.serve.service import APIError

    gate = threading.Event()
    old, new = _SlowEngine("old", ["task", "gone"], gate), _SlowEngine("new", ["task", "extra"])
    engine = SwitchableEngine(old)
    results: list[str] = []
    running = threading.Thread(target=lambda: results.append(engine.generate(GenerationRequest(model="task"))))
    running.start()
    time.sleep(0.1)
    slot = engine.switch(new)
    assert engine.model_names() == ["base", "task", "extra"] and slot.in_flight == 1 and not slot.idle.is_set()
    assert engine.generate(GenerationRequest(model="task")) == "new:task"  # a new one goes to the new engine
    with pytest.raises(APIError) as e:
        engine.generate(GenerationRequest(model="gone"))
    assert e.value.status == 404 and e.value.code == "model_not_found"
    gate.set()
    running.join(10)
    assert results == ["old:task"] and slot.idle.wait(1) and slot.in_flight == 0


def test_reload_loads_only_finished_versions_of_the_served_family(tmp_path: Path):
    from verticalize.artifacts import write_json
    from verticalize.serve.reload import Reloader
    from verticalize.serve.service import APIError

    v1, v2, v3 = (tmp_path / "svc", tmp_path / "svc.v2", tmp_path / "svc.v3")
    for d in (v1, v2, v3, tmp_path / "other"):
        (d / "config.yaml").parent.mkdir(parents=True)
        (d / "config.yaml").write_text("{}")
    write_json(RunDir(v2).manifest("iteration"), {"complete": True})
    write_json(RunDir(v3).manifest("iteration"), {"complete": False})  # still training
    reloader = Reloader(v1, load=lambda run: None)
    assert reloader.resolve(None).root == v2.resolve()  # the newest finished one
    assert reloader.resolve(str(v1)).root == v1.resolve()  # back to an older one: a rollback
    for run, code in ((str(v3), "run_incomplete"), (str(tmp_path / "other"), "invalid_run"),
                      (str(v1 / ".." / "other"), "invalid_run"), ("/etc", "invalid_run")):
        with pytest.raises(APIError) as e:
            reloader.resolve(run)
        assert e.value.status == 400 and e.value.code == code, run


def test_preference_pairs_from_approved_feedback_with_provenance(tmp_path):
    from verticalize.serve.feedback import preference_pairs

    store = FeedbackStore(tmp_path / "fb.sqlite")
    ask = lambda rid, q, a, model="task": store.record_response(rid, model, [{"role": "user", "content": q}], a,
                                                                [], False)
    ask("r1", "What is the annual fee?", "90%")                  # wrong, corrected below
    ask("r2", "What is the annual fee?", "CNY 200 a year")       # the same question answered well, rated up
    ask("r3", "How long is the grace period?", "7 months")       # corrected, but the review rejects it
    ask("r4", "Who approves loans above 1M?", "the branch")      # corrected, pending review
    ask("r5", "What is the test question?", "wrong")             # corrected, but it is a test-set question
    ask("r6", "Is the card free?", "yes")                        # rated down, correction equal to the answer
    fb = {rid: store.add_feedback(rid, rating, corr, None, key_fp=fingerprint_key(KEY)) for rid, rating, corr in (
        ("r1", -1, "CNY 200 a year"), ("r2", 1, None), ("r3", -1, "20 days"), ("r4", -1, "two directors"),
        ("r5", -1, "right"), ("r6", -1, "yes"))}
    for rid in ("r1", "r2", "r5", "r6"):
        store.review(fb[rid], "approve", "alice")
    store.review(fb["r3"], "reject", "alice")
    pairs, counts = preference_pairs(store, exclude_questions=["what is the TEST question?"], run="runs/bank")
    assert counts["pending"] == 1 and counts["rejected"] == 1 and counts["test_questions"] == 1
    assert counts["same_text"] == 1
    # r1's correction against r1's answer; r2's good answer against r1's answer is the same pair: one of them.
    assert counts["corrected"] == 1 and counts["duplicates"] == 1 and counts["pairs"] == 1
    pair = pairs[0]
    assert pair["prompt"] == [{"role": "user", "content": "What is the annual fee?"}]
    assert (pair["chosen"], pair["rejected"]) == ("CNY 200 a year", "90%")
    meta = pair["meta"]
    assert meta["rejected_response_id"] == "r1" and meta["served_model"] == "task" and meta["run"] == "runs/bank"
    assert meta["key_fingerprint"] == fingerprint_key(KEY) and meta["feedback_ids"] == [fb["r1"]]


def test_a_good_sibling_answer_is_preferred_to_a_corrected_one(tmp_path):
    from verticalize.serve.feedback import preference_pairs

    store = FeedbackStore(tmp_path / "fb.sqlite")
    store.record_response("a", "task", [{"role": "user", "content": "Fee?"}], "90%", [], False)
    store.record_response("b", "task", [{"role": "user", "content": "fee?"}], "CNY 200", [], False)
    for rid, rating, corr in (("a", -1, "CNY 200 per year"), ("b", 2, None)):
        store.review(store.add_feedback(rid, rating, corr, None), "approve", "alice")
    pairs, counts = preference_pairs(store)
    assert counts == {**counts, "corrected": 1, "against_sibling": 1, "pairs": 2}
    assert {(p["chosen"], p["rejected"], p["meta"]["kind"]) for p in pairs} == {
        ("CNY 200 per year", "90%", "corrected"), ("CNY 200", "90%", "against_sibling")}


def test_feedback_export_preferences_cli_leaves_out_the_test_questions(tmp_path):
    import subprocess
    import sys

    run = RunDir(tmp_path / "run")
    store = FeedbackStore(run.feedback_db)
    for rid, q in (("a", "Fee?"), ("t", "Grace period?")):
        store.record_response(rid, "task", [{"role": "user", "content": q}], "90%", [], False)
        store.review(store.add_feedback(rid, -1, "CNY 200", None), "approve", "alice")
    test_file = tmp_path / "test.jsonl"
    test_file.write_text(json.dumps({"question": "Grace period?", "answer": "20 days"}) + "\n")
    done = subprocess.run([sys.executable, "-m", "verticalize", "feedback", "export", str(run.root), "--preferences",
                           "--test-set", str(test_file)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "exported 1 preference pairs" in done.stdout and "1 test questions" in done.stdout
    rows = [json.loads(x) for x in run.feedback_preferences.read_text().splitlines()]
    assert [(r["prompt"][0]["content"], r["chosen"], r["rejected"]) for r in rows] == [("Fee?", "CNY 200", "90%")]


def test_rated_answers_for_kto_use_the_thumbs_down_without_a_correction(tmp_path):
    from verticalize.serve.feedback import rated_answers

    store = FeedbackStore(tmp_path / "fb.sqlite")
    ask = lambda rid, q, a: store.record_response(rid, "task", [{"role": "user", "content": q}], a, [], False)
    ask("r1", "What is the annual fee?", "90%")              # rated down, corrected: two rows
    ask("r2", "How long is the grace period?", "7 months")   # rated down, no correction: undesirable (no DPO pair)
    ask("r3", "Who approves loans?", "two directors")        # rated up: desirable
    ask("r4", "Who approves loans?", "two  directors")       # the same answer again: a duplicate
    ask("r5", "Is the card free?", "yes")                    # rated up by one reviewer, down by another: conflict
    ask("r6", "Is the card free?", "yes")
    ask("r7", "What is the test question?", "wrong")         # a test-set question
    ask("r8", "Pending?", "maybe")                           # never reviewed
    fb = {rid: store.add_feedback(rid, rating, corr, None, key_fp=fingerprint_key(KEY)) for rid, rating, corr in (
        ("r1", -1, "CNY 200 a year"), ("r2", -1, None), ("r3", 1, None), ("r4", 1, None), ("r5", 1, None),
        ("r6", -1, None), ("r7", -1, "right"), ("r8", -1, None))}
    for rid in fb:
        if rid != "r8":
            store.review(fb[rid], "approve", "alice")
    rows, counts = rated_answers(store, exclude_questions=["what is the test QUESTION?"], run="runs/bank")
    got = {(r["prompt"][0]["content"], r["completion"], r["label"]) for r in rows}
    assert got == {("What is the annual fee?", "CNY 200 a year", True), ("What is the annual fee?", "90%", False),
                   ("How long is the grace period?", "7 months", False), ("Who approves loans?", "two directors", True)}
    assert counts["desirable"] == 2 and counts["undesirable"] == 2 and counts["corrections"] == 1
    assert counts["duplicates"] == 1 and counts["conflicting"] == 1 and counts["test_questions"] == 2
    assert counts["pending"] == 1 and counts["rows"] == 4
    r2 = next(r for r in rows if r["completion"] == "7 months")
    assert r2["meta"]["origin"] == "served" and r2["meta"]["response_id"] == "r2" and r2["meta"]["rating"] == -1
    assert r2["meta"]["run"] == "runs/bank" and r2["meta"]["key_fingerprint"] == fingerprint_key(KEY)


def test_feedback_export_ratings_cli(tmp_path):
    run = RunDir(tmp_path / "run")
    store = FeedbackStore(run.feedback_db)
    store.record_response("a", "task", [{"role": "user", "content": "Fee?"}], "90%", [], False)
    store.review(store.add_feedback("a", -1, None, "wrong"), "approve", "alice")
    result = CliRunner().invoke(app, ["feedback", "export", str(run.root), "--ratings"])
    assert result.exit_code == 0, result.output
    assert "exported 1 rated answers (0 desirable, 1 undesirable" in " ".join(result.output.split())
    rows = [json.loads(x) for x in run.feedback_ratings.read_text().splitlines()]
    assert [(r["completion"], r["label"]) for r in rows] == [("90%", False)]
    both = CliRunner().invoke(app, ["feedback", "export", str(run.root), "--ratings", "--preferences"])
    assert both.exit_code != 0 and "give one" in both.output


def test_feedback_pairs_and_ratings_leave_out_near_duplicates_of_test_questions(tmp_path):
    """The data stage's decontamination rule (exact, or near with the same numbers), not only the same text."""
    from verticalize.serve.feedback import preference_pairs, rated_answers

    store = FeedbackStore(tmp_path / "fb.sqlite")
    for rid, q in (("near", "So what is the annual fee of the Harbor Gold credit card in 2025?"),
                   ("other_year", "What is the annual fee of the Harbor Gold credit card in 2026?")):
        store.record_response(rid, "task", [{"role": "user", "content": q}], "90%", [], False)
        store.review(store.add_feedback(rid, -1, "CNY 200", None), "approve", "alice")
    test = ["What is the annual fee of the Harbor Gold credit card in 2025?"]
    pairs, counts = preference_pairs(store, exclude_questions=test)
    assert [p["meta"]["question"] for p in pairs] == ["What is the annual fee of the Harbor Gold credit card in 2026?"]
    assert counts["test_questions"] == 1
    rows, counts = rated_answers(store, exclude_questions=test)
    assert {r["meta"]["question"] for r in rows} == {"What is the annual fee of the Harbor Gold credit card in 2026?"}
    assert counts["test_questions"] == 2  # the correction and the served answer of the near duplicate
