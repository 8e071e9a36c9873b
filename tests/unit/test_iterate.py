"""`run --iterate`'s bookkeeping without training: which version it starts from, where it writes, resuming, and
the approved feedback of the whole lineage as seed data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from verticalize.artifacts import RunDir, write_json
from verticalize.config import load_config
from verticalize.errors import UserError
from verticalize.pipeline import prepare_iteration
from verticalize.serve.feedback import FeedbackStore


def _served(root: Path, approved: list[str], pending: list[str] = ()) -> RunDir:
    run = RunDir(root)
    write_json(run.manifest("train"), {"stage": "train"})
    write_json(run.manifest("ingest"), {"stage": "ingest"})
    (run.stage("ingest") / "chunks.jsonl").write_text('{"id": "c1"}\n')
    write_json(root / "pipeline.json", {"ingest": "key-ingest", "data": "key-data"})
    store = FeedbackStore(run.feedback_db)
    for rid in [*approved, *pending]:
        store.record_response(rid, "lora", [{"role": "user", "content": f"question {rid}?"}], "answer", [], False)
        fid = store.add_feedback(rid, -1, f"fixed {rid}", None)
        if rid in approved:
            store.review(fid, "approve", "alice")
    return run


def _cfg(run_dir: Path):
    return load_config(None, [f"project.run_dir={run_dir}"])


def test_iteration_versions_resume_and_lineage(tmp_path: Path):
    v1 = _served(tmp_path / "demo", ["a"], ["p"])
    cfg, it = prepare_iteration(_cfg(v1.root))
    v2 = tmp_path.resolve() / "demo.v2"
    assert it.target.root == v2 and not it.resumed and it.counts["pending"] == 1
    assert cfg.project.run_dir == str(v2) and cfg.project.seed_data[-1] == str(RunDir(v2).iteration_seed)
    assert (v2 / "ingest" / "chunks.jsonl").is_file()  # ingest copied with its key; data is not reused
    assert json.loads((v2 / "pipeline.json").read_text()) == {"ingest": "key-ingest"}
    assert not (v1.root / "feedback" / "seed.jsonl").exists()  # nothing is written into the served run

    # An interrupted iteration (v2 not complete) is resumed, not skipped over.
    _, again = prepare_iteration(_cfg(v1.root))
    assert again.target.root == v2 and again.resumed

    # Once v2 is complete and served (its own feedback), the next iteration starts from it: v3 gets the approved
    # feedback of v1 and v2.
    write_json(RunDir(v2).manifest("train"), {"stage": "train"})
    info = json.loads(RunDir(v2).manifest("iteration").read_text())
    write_json(RunDir(v2).manifest("iteration"), {**info, "complete": True})
    _served(v2, ["b"])
    _, third = prepare_iteration(_cfg(v1.root))
    assert third.source.root == v2 and third.target.root == tmp_path.resolve() / "demo.v3"
    seed = [json.loads(x) for x in third.target.iteration_seed.read_text().splitlines()]
    assert sorted(r["messages"][1]["content"] for r in seed) == ["fixed a", "fixed b"]
    # The same approved corrections as preference pairs (correction over the served answer), for a dpo stage.
    pairs = [json.loads(x) for x in third.target.feedback_preferences.read_text().splitlines()]
    assert sorted((p["chosen"], p["rejected"]) for p in pairs) == [("fixed a", "answer"), ("fixed b", "answer")]
    assert third.counts["preference_pairs"] == 2
    # ... and as unpaired ratings for a kto stage: each correction desirable, each served answer undesirable.
    ratings = [json.loads(x) for x in third.target.feedback_ratings.read_text().splitlines()]
    assert sorted((r["completion"], r["label"]) for r in ratings) == [("answer", False), ("answer", False),
                                                                      ("fixed a", True), ("fixed b", True)]
    assert third.counts["rated_answers"] == 4


def test_iteration_needs_approved_feedback(tmp_path: Path):
    with pytest.raises(UserError, match="no run"):
        prepare_iteration(_cfg(tmp_path / "missing"))
    v1 = _served(tmp_path / "demo", [], ["p"])
    with pytest.raises(UserError, match="no approved feedback"):
        prepare_iteration(_cfg(v1.root))
    assert not (tmp_path / "demo.v2").exists()


def test_feedback_holdout_is_a_stable_share_of_the_corrected_questions():
    from verticalize.pipeline import hold_out_feedback

    def ex(i: int, generator: str = "seed:feedback") -> dict:
        return {"id": f"fb-{i}", "meta": {"question": f"Question {i}?", "answer": f"a{i}", "generator": generator}}

    ten = [ex(i) for i in range(10)]
    assert hold_out_feedback(ten, 0.0) == (ten, [])
    assert hold_out_feedback([ex(1)], 0.5) == ([ex(1)], [])  # one correction: it trains
    kept, held = hold_out_feedback(ten, 0.2)
    assert len(held) == 2 and len(kept) == 8 and {e["id"] for e in kept + held} == {e["id"] for e in ten}
    assert {e["id"] for e in hold_out_feedback(list(reversed(ten)), 0.2)[1]} == {e["id"] for e in held}  # stable
    assert len(hold_out_feedback(ten[:2], 0.5)[1]) == 1  # never all of them
    # The same question asked twice is held out (or kept) as one; other seed kinds are never held out.
    twice = [*ten[:3], {**ex(0), "id": "fb-again"}, ex(99, "seed:user")]
    kept, held = hold_out_feedback(twice, 0.34)
    assert all(e["meta"]["generator"] == "seed:feedback" for e in held)
    assert {e["meta"]["question"] for e in held}.isdisjoint({e["meta"]["question"] for e in kept})
