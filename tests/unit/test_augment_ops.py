"""Offline augmentation: glossary entity replacement, synonym swap, list reordering; provenance and counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from verticalize.config import AugmentConfig
from verticalize.data.augment import augment
from verticalize.data.augment_glossary import GlossaryError, load_glossary
from verticalize.data.schema import make_example

CHUNK = {"id": "d1:0003", "doc_id": "d1", "source": "loans.md"}


def _ex(question: str, answer: str, **kw) -> dict:
    kind, generator = kw.pop("kind", "synthetic"), kw.pop("generator", "rules:obligation")
    return make_example(question, answer, kind=kind, generator=generator, chunk=CHUNK, **kw)


def _glossary(tmp_path: Path, text: str, name: str = "glossary.csv") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def _cfg(**kw) -> AugmentConfig:
    base = dict(entity_replacement=False, synonym_swap=False, list_reorder=False, max_per_example=3)
    base.update(kw)
    return AugmentConfig(**base)


def test_entity_replacement_is_consistent_and_only_where_a_term_occurs(tmp_path: Path) -> None:
    glossary = _glossary(tmp_path, "term,replacement\n借款人,甲公司\n招商银行,星河银行\nborrower,Acme Ltd\n")
    parents = [_ex("借款人在提款前应当做什么？", "借款人在提款前应当向招商银行提供收入证明。"),
               _ex("What must the borrower do?", "The borrower must repay on time."),
               _ex("信用卡年费为多少元？", "100元", generator="rules:amount")]
    made, counts = augment(parents, _cfg(entity_replacement=True, glossary=glossary))
    assert [(e["meta"]["question"], e["meta"]["answer"]) for e in made] == [
        ("甲公司在提款前应当做什么？", "甲公司在提款前应当向星河银行提供收入证明。"),
        ("What must Acme Ltd do?", "Acme Ltd must repay on time.")]
    assert counts == {"made:entity_replacement": 2}
    child = made[0]
    assert child["messages"] == [{"role": "user", "content": "甲公司在提款前应当做什么？"},
                                 {"role": "assistant", "content": "甲公司在提款前应当向星河银行提供收入证明。"}]
    meta = child["meta"]
    assert meta["kind"] == "augmented" and meta["generator"] == "augment:entity_replacement"
    assert meta["parent_id"] == parents[0]["id"] and child["id"] != parents[0]["id"]
    assert (meta["doc_id"], meta["source"], meta["chunk_ids"]) == ("d1", "loans.md", ["d1:0003"])


def test_replacements_do_not_chain_and_respect_word_boundaries(tmp_path: Path) -> None:
    glossary = _glossary(tmp_path, "Alpha,Beta\nBeta,Gamma\nfee,charge\n")
    made, _ = augment([_ex("Does Alpha pay the fee for coffee?", "Alpha and Beta pay it.")],
                      _cfg(entity_replacement=True, glossary=glossary))
    assert made[0]["meta"]["question"] == "Does Beta pay the charge for coffee?"
    assert made[0]["meta"]["answer"] == "Beta and Gamma pay it."


def test_synonym_swap_changes_the_question_only_and_skips_longer_terms(tmp_path: Path) -> None:
    glossary = _glossary(tmp_path, "term,replacement,kind\n年费,年度费用,synonym\n借款,贷款,synonym\n"
                                   "借款人,甲公司,entity\n")
    parents = [_ex("信用卡年费为多少元？", "信用卡年费为100元。", generator="rules:amount"),
               _ex("借款人应当做什么？", "借款人应当按时还款。")]
    made, counts = augment(parents, _cfg(synonym_swap=True, glossary=glossary))
    assert [(e["meta"]["question"], e["meta"]["answer"]) for e in made] == [
        ("信用卡年度费用为多少元？", "信用卡年费为100元。")]  # 借款 inside the entity 借款人 is left alone
    assert counts == {"made:synonym_swap": 1}


def test_list_reorder_moves_items_and_keeps_markers_and_punctuation() -> None:
    parent = _ex("贷款申请应当提供哪些材料？", "（一）身份证件；\n（二）收入证明；\n（三）担保材料。", generator="rules:list")
    made, counts = augment([parent], _cfg(list_reorder=True), seed=3)
    [child] = made
    lines = child["meta"]["answer"].split("\n")
    assert [line[:3] for line in lines] == ["（一）", "（二）", "（三）"]
    assert [line[-1] for line in lines] == ["；", "；", "。"]
    assert sorted(line[3:-1] for line in lines) == sorted(["身份证件", "收入证明", "担保材料"])
    assert lines != parent["meta"]["answer"].split("\n")
    assert child["meta"]["question"] == parent["meta"]["question"] and counts == {"made:list_reorder": 1}
    # Same seed, same order; the ids are stable too.
    assert augment([parent], _cfg(list_reorder=True), seed=3)[0] == made


def test_list_reorder_leaves_ordered_steps_alone() -> None:
    parent = _ex("What are the steps to restart the service?", "1. Stop the app\n2. Start the app")
    made, counts = augment([parent], _cfg(list_reorder=True))
    assert made == [] and counts == {"list_reorder:ordered_list": 1}


def test_max_per_example_and_augmented_parents_are_not_augmented_again(tmp_path: Path) -> None:
    glossary = _glossary(tmp_path, "term,replacement,kind\n借款人,甲公司,entity\n借款人,债务人,synonym\n")
    parent = _ex("借款人应当提供哪些材料？", "1. 身份证件\n2. 收入证明", generator="rules:list")
    cfg = _cfg(entity_replacement=True, synonym_swap=True, list_reorder=True, glossary=glossary)
    made, _ = augment([parent], cfg.model_copy(update={"max_per_example": 1}))
    assert len(made) == 1
    made_all, counts = augment([parent], cfg)
    assert sorted(e["meta"]["generator"] for e in made_all) == [
        "augment:entity_replacement", "augment:list_reorder", "augment:synonym_swap"]
    again, _ = augment(made_all, cfg)
    assert again == []


def test_classification_examples_keep_their_label(tmp_path: Path) -> None:
    glossary = _glossary(tmp_path, "招商银行,星河银行\n")
    parent = make_example("招商银行的卡被盗刷了", "fraud", kind="seed", generator="seed:csv", chunk=CHUNK,
                          task="classification", label="fraud")
    [child], _ = augment([parent], _cfg(entity_replacement=True, glossary=glossary))
    assert child["meta"]["question"] == "星河银行的卡被盗刷了"
    assert child["meta"]["answer"] == "fraud" and child["meta"]["label"] == "fraud"
    assert child["meta"]["task"] == "classification" and child["meta"]["kind"] == "augmented"


def test_teacher_operations_without_a_teacher_are_counted_not_fatal() -> None:
    made, counts = augment([_ex("What must the borrower do?", "Repay.")],
                           _cfg(back_translation=True, paraphrase=True))
    assert made == [] and counts == {"back_translation:no_teacher": 1, "paraphrase:no_teacher": 1}


def test_glossary_formats_and_bad_rows(tmp_path: Path) -> None:
    csv_path = _glossary(tmp_path, "term,replacement,kind\n借款人,甲公司\n,empty\n年费,年度费用|年度收费,synonym\n"
                                   "x,y,color\nsame,same\n")
    glossary = load_glossary(csv_path)
    assert glossary.entities == {"借款人": "甲公司"}
    assert glossary.synonyms["年费"] == ["年度费用", "年度收费"] and glossary.synonyms["年度收费"] == ["年费", "年度费用"]
    assert [p.split(": ", 1)[1] for p in glossary.skipped_rows] == [
        "empty term", "kind 'color' is not one of entity, synonym", "term 'same' is replaced by itself"]
    assert glossary.skipped_rows[0].startswith(f"{csv_path}:3")
    nested = tmp_path / "g.json"
    nested.write_text(json.dumps({"entities": {"ACME": "Globex"}, "synonyms": {"fee": ["charge"]}}), encoding="utf-8")
    assert load_glossary(nested).entities == {"ACME": "Globex"} and load_glossary(nested).synonyms["charge"] == ["fee"]
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([{"term": "A", "replacement": "B"}, "junk"]), encoding="utf-8")
    assert load_glossary(rows).entities == {"A": "B"} and len(load_glossary(rows).skipped_rows) == 1
    made, counts = augment([], _cfg(entity_replacement=True, glossary=csv_path))
    assert counts == {"glossary:skipped_rows": 3}


def test_unreadable_glossary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="glossary file not found: .*nope.csv"):
        load_glossary(tmp_path / "nope.csv")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(GlossaryError, match="bad.json is not valid JSON"):
        load_glossary(bad)
