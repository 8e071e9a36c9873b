"""One reader each: a test-set file (data and evaluate read it alike), recall@k vs hit rate, adapter metadata."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from verticalize.artifacts import AdapterMetadataError, read_adapter_meta
from verticalize.data.testset import load_test_set as data_load
from verticalize.engine import layered_stacks
from verticalize.evaluate.testsets import read_test_file as eval_read
from verticalize.retrieval import hit_rate_at_k, mean_reciprocal_rank, mrr_of_ranks, recall_at_k
from verticalize.testsets import read_test_file


def test_data_and_evaluate_accept_and_refuse_the_same_rows_with_the_same_reasons(tmp_path: Path) -> None:
    f = tmp_path / "t.jsonl"
    f.write_text("\n".join([
        json.dumps({"question": "Who signs?", "answer": ["The borrower", "the borrower himself"]}),
        json.dumps({"question": "Who founded the bank?", "answer": []}),
        json.dumps({"instruction": "Fee?", "input": "Card A", "output": "100 yuan"}),
        json.dumps({"conversations": [{"from": "human", "value": "Q?"}, {"from": "gpt", "value": "A."}]}),
        json.dumps({"text": "card lost", "label": "card"}),
        json.dumps({"question": "q only"}),
        "{oops",
        json.dumps({"question": "Contradiction?", "answer": [], "answerable": True}),
    ]), encoding="utf-8")
    tf = read_test_file(f)
    assert [r.key for r in tf.rows if r.error] == [6, 7, 8]
    data_examples, report = data_load(f)
    ts = eval_read(f, "user")
    assert report.problems == tf.problems() == [f"t.jsonl:{r['line']}: {r['reason']}" for r in ts.refused]
    assert [e["meta"]["question"] for e in data_examples] == [e.question for e in ts.examples] == [
        "Who signs?", "Who founded the bank?", "Fee?\nCard A", "Q?", "card lost"]
    assert [e.answerable for e in ts.examples] == [e["meta"].get("answerable", True) for e in data_examples]
    assert ts.examples[0].references == data_examples[0]["meta"]["answers"]
    assert ts.examples[4].task == "classification" and ts.examples[4].references == ["card"]


def test_missing_and_unusable_test_files_are_one_error_for_both(tmp_path: Path) -> None:
    from verticalize.testsets import TestSetError

    bad = tmp_path / "bad.jsonl"
    bad.write_text("nope\n", encoding="utf-8")
    for read in (data_load, lambda p: eval_read(p, "user")):
        with pytest.raises(TestSetError, match="no usable example; refused rows: bad.jsonl:1: invalid JSON"):
            read(bad)
        with pytest.raises(TestSetError, match="test set not found"):
            read(tmp_path / "missing.jsonl")


def test_hit_rate_and_recall_at_k_are_different_questions() -> None:
    ranked = [["c1", "c2", "c3"], ["c4", "c5", "c6"]]
    gold = [["c1", "c9"], ["c6"]]
    assert recall_at_k(ranked, gold, 2) == pytest.approx((0.5 + 0) / 2)  # share of gold items found, per question
    ranks = [1, 3]  # each question's first relevant rank
    assert hit_rate_at_k(ranks, 2) == 0.5 and hit_rate_at_k(ranks, 3) == 1.0 and hit_rate_at_k([], 1) == 0.0
    assert mean_reciprocal_rank(ranked, gold) == pytest.approx(mrr_of_ranks(ranks)) == pytest.approx((1 + 1 / 3) / 2)
    assert mrr_of_ranks([1, 3, None], cutoff=2) == pytest.approx(1 / 3)


def test_one_reader_of_adapter_metadata(tmp_path: Path) -> None:
    root = tmp_path / "adapters"
    for name, meta in {"a": {"name": "a"}, "b": {"name": "b", "parent": "a", "layering": "merged-parents"}}.items():
        (root / name).mkdir(parents=True)
        (root / name / "verticalize_adapter.json").write_text(json.dumps(meta), encoding="utf-8")
    (root / "plain").mkdir()
    assert read_adapter_meta(root / "b")["parent"] == "a" and read_adapter_meta(root / "plain") is None
    with pytest.raises(AdapterMetadataError, match="plain.*missing"):
        read_adapter_meta(root / "plain", required=True)
    # The engine still takes plain name -> path dicts.
    assert layered_stacks({"a": root / "a", "b": root / "b", "plain": root / "plain"}) == {"b": ["a", "b"]}
    (root / "a" / "verticalize_adapter.json").write_text("{broken", encoding="utf-8")
    with pytest.raises(AdapterMetadataError, match="verticalize_adapter.json cannot be read"):
        read_adapter_meta(root / "a")
