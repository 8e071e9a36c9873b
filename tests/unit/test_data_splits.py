"""Splits by source document: no overlap, augmented variants with parents, seed-first test, user test override."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from verticalize.data.schema import make_example
from verticalize.data.splits import group_examples, overlap_report, split_examples
from verticalize.data.testset import TestSetError, load_test_set


def _synthetic(n_docs: int, per_doc: int) -> list[dict]:
    out = []
    for d in range(n_docs):
        for q in range(per_doc):
            out.append(make_example(f"doc {d} question {q}?", f"answer {d}.{q}", kind="synthetic",
                                    generator="rules:definition", source=f"doc{d}.md", doc_id=f"d{d}",
                                    chunk_ids=[f"d{d}:{q:04d}"]))
    return out


def _augmented(parents: list[dict]) -> list[dict]:
    return [make_example(p["meta"]["question"] + " (variant)", p["meta"]["answer"], kind="augmented",
                         generator="augment:list_reorder", parent_id=p["id"]) for p in parents]


def _seed(n: int) -> list[dict]:
    return [make_example(f"human question {i}?", f"human answer {i}", kind="seed", generator="seed:alpaca",
                         source="seed.jsonl", id=f"seed-{i}") for i in range(n)]


def _split_of(result) -> dict[str, str]:
    return {ex["id"]: s for s, rows in result.splits.items() for ex in rows}


def test_no_document_crosses_splits_and_variants_stay_with_parents():
    base = _synthetic(n_docs=20, per_doc=5)
    variants = _augmented(base[::3])  # augmented rows carry no doc_id: only parent_id ties them
    result = split_examples(base + variants, (0.8, 0.1, 0.1), seed=7)
    where = _split_of(result)
    assert sum(result.counts().values()) == len(base) + len(variants)
    assert overlap_report(result.splits) == {"train/validation": 0, "train/test": 0, "validation/test": 0}
    for v in variants:
        assert where[v["id"]] == where[v["meta"]["parent_id"]]
    for split in ("validation", "test"):
        assert 5 <= len(result.splits[split]) <= 20  # whole documents of 5-7 rows near the 10 % target
    assert result.test_source == "drawn"


def test_split_is_deterministic_for_a_seed_and_changes_with_it():
    rows = _synthetic(30, 3)
    a = split_examples(rows, (0.8, 0.1, 0.1), seed=1)
    b = split_examples(list(reversed(rows)), (0.8, 0.1, 0.1), seed=1)
    c = split_examples(rows, (0.8, 0.1, 0.1), seed=2)
    ids = lambda r: {s: sorted(e["id"] for e in v) for s, v in r.splits.items()}  # noqa: E731
    assert ids(a) == ids(b)
    assert ids(a) != ids(c)


def test_test_split_prefers_seed_data_but_leaves_seed_for_training():
    rows = _synthetic(20, 5) + _seed(20)
    result = split_examples(rows, (0.8, 0.1, 0.1), seed=3)
    test_kinds = {e["meta"]["kind"] for e in result.splits["test"]}
    assert result.test_source == "seed-first"
    assert test_kinds == {"seed"} and len(result.splits["test"]) == 10  # 10 % of 120 = 12, capped at half the seed
    assert sum(e["meta"]["kind"] == "seed" for e in result.splits["train"] + result.splits["validation"]) == 10
    # With a larger seed share allowed, the test split is all seed and reaches its 10 % target.
    full = split_examples(rows, (0.8, 0.1, 0.1), seed=3, seed_test_max_share=1.0)
    assert len(full.splits["test"]) == 12 and {e["meta"]["kind"] for e in full.splits["test"]} == {"seed"}


def test_user_test_examples_replace_the_drawn_test_split():
    rows = _synthetic(10, 4) + _seed(6)
    user = _seed(3)
    for u in user:
        u["id"] = "user-" + u["id"]
    result = split_examples(rows, (0.8, 0.1, 0.1), seed=0, test_examples=user)
    assert [e["id"] for e in result.splits["test"]] == ["user-seed-0", "user-seed-1", "user-seed-2"]
    assert len(result.splits["train"]) + len(result.splits["validation"]) == len(rows)
    assert result.test_source == "user"


def test_tiny_inputs_never_leave_training_empty():
    assert split_examples(_seed(1), (0.8, 0.1, 0.1), seed=0).counts() == {"train": 1, "validation": 0, "test": 0}
    two = split_examples(_synthetic(2, 1), (0.8, 0.1, 0.1), seed=0).counts()
    assert two["train"] >= 1 and sum(two.values()) == 2


def test_groups_join_documents_and_families():
    rows = _synthetic(2, 2)
    variant = _augmented(rows[:1])
    groups = group_examples(rows + variant)
    assert sorted(len(g) for g in groups.values()) == [2, 3]


def test_load_squad_and_our_jsonl_test_sets(tmp_path: Path):
    squad = {"version": "v1", "data": [{"title": "卡", "paragraphs": [{"id": "P1", "context": "年费100元。", "qas": [
        {"id": "Q1", "question": "年费多少？", "answers": [{"text": "100元", "answer_start": 2},
                                                        {"text": "100元", "answer_start": 2},
                                                        {"text": "100", "answer_start": 2}]},
        {"id": "Q2", "question": "没有答案？", "answers": []}]}]}]}
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(squad, ensure_ascii=False), encoding="utf-8")
    examples, report = load_test_set(path)
    assert [(e["id"], e["meta"]["question"], e["meta"]["answer"]) for e in examples] == [("Q1", "年费多少？", "100元")]
    assert examples[0]["meta"]["answers"] == ["100元", "100"]
    assert examples[0]["meta"]["kind"] == "seed" and examples[0]["meta"]["generator"] == "seed:squad"
    assert report.problems == ['squad.json:data[0].paragraphs[0].qas[1]: no answer (mark an unanswerable question '
                               'with "is_impossible": true)']

    ours = make_example("Q?", "A.", kind="synthetic", generator="rules:number", doc_id="d1", id="ours-1")
    jl = tmp_path / "test.jsonl"
    jl.write_text(json.dumps(ours) + "\n" + json.dumps({"question": "Q2?", "answer": "A2"}) + "\nnot json\n",
                  encoding="utf-8")
    examples, report = load_test_set(jl)
    assert examples[0] == ours
    assert examples[1]["meta"]["generator"] == "seed:qa"
    assert len(report.problems) == 1 and report.problems[0].startswith("test.jsonl:3: invalid JSON")

    with pytest.raises(TestSetError, match="test set not found"):
        load_test_set(tmp_path / "missing.jsonl")


def _labelled(counts: dict[str, int]) -> list[dict]:
    return [make_example(f"{label} text {i}", label, kind="seed", generator="seed:classification",
                         task="classification", source="labels.csv", id=f"{label}-{i}")
            for label, n in counts.items() for i in range(n)]


def _labels_in(rows: list[dict]) -> dict[str, int]:
    return dict(Counter(ex["meta"]["label"] for ex in rows))


def test_classification_splits_are_stratified_by_label():
    counts = {"billing": 60, "fraud": 20, "lost_card": 10, "limit": 4, "rare": 2, "single": 1}
    rows = _labelled(counts)
    for seed in range(5):
        result = split_examples(rows, (0.8, 0.1, 0.1), seed=seed, stratify_by_label=True)
        train, val, test = (_labels_in(result.splits[s]) for s in ("train", "validation", "test"))
        assert sum(result.counts().values()) == len(rows) and len(set(_split_of(result))) == len(rows)
        for label, n in counts.items():
            assert train.get(label, 0) >= 1                        # every label is learned
            assert test.get(label, 0) == (0 if n == 1 else max(1, round(0.1 * n)))  # and tested where it can be
        assert test["billing"] == 6 and 5 <= val.get("billing", 0) <= 7
        assert 8 <= sum(val.values()) <= 12                        # ~10 % of what the test split left
        assert result.test_source == "seed-first"
    again = split_examples(list(reversed(rows)), (0.8, 0.1, 0.1), seed=4, stratify_by_label=True)
    assert _split_of(again) == _split_of(result)                   # depends on data and seed, not row order


def test_stratified_split_keeps_groups_whole_and_honours_a_user_test_file():
    rows = _labelled({"a": 30, "b": 9})
    variants = [make_example(p["meta"]["question"] + "!", p["meta"]["answer"], kind="augmented",
                             generator="augment:synonym_swap", task="classification", parent_id=p["id"])
                for p in rows[:30:3]]
    result = split_examples(rows + variants, (0.8, 0.1, 0.1), seed=1, stratify_by_label=True)
    where = _split_of(result)
    assert all(where[v["id"]] == where[v["meta"]["parent_id"]] for v in variants)
    assert set(_labels_in(result.splits["test"])) == {"a", "b"}
    user = _labelled({"b": 3})
    result = split_examples(rows, (0.8, 0.1, 0.1), seed=1, test_examples=user, stratify_by_label=True)
    assert result.splits["test"] == user and result.test_source == "user"
    assert set(_labels_in(result.splits["train"])) == {"a", "b"} and sum(result.counts().values()) == 42
