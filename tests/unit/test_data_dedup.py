"""Example dedup (exact and near, families exempt) and decontamination against the test split."""

from __future__ import annotations

from verticalize.data.dedup import decontaminate, dedup_examples
from verticalize.data.schema import make_example


def _ex(q: str, a: str, kind: str = "synthetic", **kw) -> dict:
    return make_example(q, a, kind=kind, generator="rules:x" if kind != "seed" else "seed:qa", **kw)


def test_exact_and_near_duplicates_are_dropped_first_one_kept():
    seed = _ex("What is the annual fee of card A?", "100 yuan", kind="seed", source="s.jsonl")
    rows = [
        seed,
        _ex("what is the ANNUAL fee of card a", "It is one hundred yuan", doc_id="d1"),   # exact question
        _ex("贷款不得用于哪些投资？借款人不得将贷款用于股票投资和期货交易。", "股票投资和期货交易", doc_id="d2"),
        _ex("贷款不得用于哪些投资?借款人不得将贷款用于股票投资和期货交易", "股票投资和期货交易。", doc_id="d3"),  # exact (punct)
        _ex("Which documents must a loan application include besides identity?",
            "Proof of income and the signed form.", doc_id="d4"),
        _ex("Which documents must a loan application include besides the identity?",
            "Proof of income and the signed form.", doc_id="d5"),  # near duplicate
        _ex("Which documents must a mortgage application include?", "Title deed.", doc_id="d6"),  # distinct
    ]
    kept, dropped = dedup_examples(rows, near_threshold=0.8)
    assert [e["meta"].get("doc_id") for e in kept] == [None, "d2", "d4", "d6"]
    assert kept[0] is seed
    assert dropped == {"exact": 2, "near": 1}


def test_augmented_variants_are_not_duplicates_of_their_own_family():
    parent = _ex("List the required documents.", "ID card; proof of income; application form", doc_id="d1")
    variant = make_example("List the required documents.", "proof of income; ID card; application form",
                           kind="augmented", generator="augment:list_reorder", parent_id=parent["id"])
    stranger = _ex("List the required documents.", "passport", doc_id="d9")
    kept, dropped = dedup_examples([parent, variant, stranger])
    assert [e["id"] for e in kept] == [parent["id"], variant["id"]]
    assert dropped == {"exact": 1}


def test_decontamination_removes_a_planted_near_duplicate_and_counts_it():
    test = [_ex("逾期超过多少天银行应当停止计息？", "90天", kind="seed", id="t1"),
            _ex("What must a loan application include?", "Proof of income.", kind="seed", id="t2")]
    train = [_ex("逾期超过多少天，银行应当停止计息", "九十天", doc_id="d1", id="planted-exact"),
             _ex("What must a loan application include??", "Income proof", doc_id="d2", id="planted-punct"),
             _ex("In the loan rules, what must a loan application include?", "x", doc_id="d2", id="planted-near"),
             _ex("Who may waive the annual fee?", "The issuing bank.", doc_id="d3", id="clean-1")]
    validation = [_ex("What must a loan application include ?", "Income", doc_id="d4", id="planted-val"),
                  _ex("How is the card activated?", "By phone.", doc_id="d5", id="clean-2")]
    splits = {"train": train, "validation": validation, "test": test}
    report = decontaminate(splits, threshold=0.6)
    assert [e["id"] for e in splits["train"]] == ["clean-1"]
    assert [e["id"] for e in splits["validation"]] == ["clean-2"]
    assert report["removed"] == {"train": 3, "validation": 1}
    assert {(r["id"], r["test_id"]) for r in report["examples"]} == {
        ("planted-exact", "t1"), ("planted-punct", "t2"), ("planted-near", "t2"), ("planted-val", "t2")}
    assert splits["test"] == test
