"""Seed import: every form in JSONL and CSV, bad rows reported with file:line, encodings."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from verticalize.data.seed_import import SeedDataError, import_seed_files

ROWS = {
    "alpaca": {"instruction": "What is the annual fee?", "input": "Card A", "output": "100 yuan."},
    "sharegpt": {"conversations": [{"from": "system", "value": "be brief"},
                                   {"from": "human", "value": "逾期多久停止计息？"},
                                   {"from": "gpt", "value": "逾期超过90天。"}]},
    "messages": {"messages": [{"role": "user", "content": "Who signs the loan?"},
                              {"role": "assistant", "content": "The borrower."}]},
    "classification": {"text": "My card was charged twice", "label": "billing"},
    "qa": {"question": "贷款能否用于股票投资？", "answer": "不得。"},
}
EXPECTED = {  # form -> (question, answer, task)
    "alpaca": ("What is the annual fee?\nCard A", "100 yuan.", "qa"),
    "sharegpt": ("逾期多久停止计息？", "逾期超过90天。", "qa"),
    "messages": ("Who signs the loan?", "The borrower.", "qa"),
    "classification": ("My card was charged twice", "billing", "classification"),
    "qa": ("贷款能否用于股票投资？", "不得。", "qa"),
}


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def _write_csv(path: Path, row: dict, encoding: str = "utf-8") -> Path:
    cells = {k: json.dumps(v, ensure_ascii=False) if isinstance(v, list) else v for k, v in row.items()}
    with open(path, "w", newline="", encoding=encoding) as fh:
        writer = csv.DictWriter(fh, fieldnames=list(cells))
        writer.writeheader()
        writer.writerow(cells)
    return path


@pytest.mark.parametrize("form", list(ROWS))
@pytest.mark.parametrize("container", ["jsonl", "csv"])
def test_every_form_in_jsonl_and_csv(tmp_path: Path, form: str, container: str):
    path = tmp_path / f"seed_{form}.{container}"
    if container == "jsonl":
        _write_jsonl(path, [ROWS[form]])
    else:
        _write_csv(path, ROWS[form])
    examples, report = import_seed_files([path])
    assert report.problems == []
    assert len(examples) == 1
    ex = examples[0]
    question, answer, task = EXPECTED[form]
    meta = ex["meta"]
    assert (meta["question"], meta["answer"], meta["task"]) == (question, answer, task)
    assert meta["kind"] == "seed" and meta["generator"] == f"seed:{form}" and meta["source"] == path.name
    assert meta["doc_id"] is None and meta["chunk_ids"] == [] and meta["parent_id"] is None
    assert ex["messages"] == [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    if task == "classification":
        assert meta["label"] == "billing"
    assert report.forms == {form: 1}
    if form == "sharegpt":
        assert report.system_turns_dropped == 1


def test_form_is_detected_per_row_and_bad_rows_are_reported_with_line_numbers(tmp_path: Path):
    path = _write_jsonl(tmp_path / "mixed.jsonl", [
        ROWS["alpaca"],                                                   # line 1 ok
        '{"instruction": "broken',                                        # line 2 invalid JSON
        ROWS["classification"],                                           # line 3 ok
        {"instruction": "", "output": "x"},                               # line 4 empty instruction
        {"messages": [{"role": "assistant", "content": "hi"}]},          # line 5 no user turn
        {"colour": "blue", "text": "t"},                                  # line 6 unknown form
        '[1, 2]',                                                         # line 7 not an object
        {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},  # line 8 ok
    ])
    examples, report = import_seed_files([path])
    assert [e["meta"]["generator"] for e in examples] == ["seed:alpaca", "seed:classification", "seed:sharegpt"]
    lines = [p.split(":")[1] for p in report.problems]
    assert lines == ["2", "4", "5", "6", "7"]
    assert "invalid JSON" in report.problems[0]
    assert "empty 'instruction'" in report.problems[1]
    assert "should be a user turn" in report.problems[2]
    assert "unrecognised row" in report.problems[3] and "alpaca" in report.problems[3]
    assert "expected a JSON object" in report.problems[4]
    assert report.files["mixed.jsonl"] == {"path": str(path), "rows": 8, "imported": 3, "skipped": 5}


def test_csv_with_broken_rows_gbk_encoding_and_multi_turn(tmp_path: Path):
    path = tmp_path / "gbk.csv"
    path.write_bytes("text,label\n信用卡被重复扣费,账务\n只有一列\n贷款审批太慢,贷款\n,空文本\n".encode("gbk"))
    examples, report = import_seed_files([path])
    assert [(e["meta"]["question"], e["meta"]["label"]) for e in examples] == [("信用卡被重复扣费", "账务"),
                                                                                ("贷款审批太慢", "贷款")]
    assert report.problems == ["gbk.csv:3: row has 1 fields, the header has 2", "gbk.csv:5: empty 'text'"]

    multi = _write_jsonl(tmp_path / "multi.jsonl", [{"messages": [
        {"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2"}, {"role": "assistant", "content": "A2"}]}])
    (ex,), _ = import_seed_files([multi])
    assert len(ex["messages"]) == 4 and ex["meta"]["question"] == "Q2" and ex["meta"]["answer"] == "A2"


def test_json_list_directory_and_missing_path(tmp_path: Path):
    folder = tmp_path / "seed"
    folder.mkdir()
    (folder / "alpaca.json").write_text(json.dumps([ROWS["alpaca"], {"instruction": "x"}]), encoding="utf-8")
    (folder / "notes.txt").write_text("ignored", encoding="utf-8")
    examples, report = import_seed_files([folder])
    assert len(examples) == 1
    assert report.problems == ["alpaca.json:item 2: missing 'output'"]
    squad = tmp_path / "squad.json"
    squad.write_text(json.dumps({"version": "1", "data": [{"paragraphs": []}]}), encoding="utf-8")
    _, report = import_seed_files([squad])
    assert report.problems == ["squad.json:1: this looks like a SQuAD file: give it as project.test_set "
                               "(seed data holds training rows)"]
    with pytest.raises(SeedDataError, match="seed data file not found: .*nope.jsonl"):
        import_seed_files([tmp_path / "nope.jsonl"])


def test_ids_are_stable_and_distinct(tmp_path: Path):
    path = _write_jsonl(tmp_path / "s.jsonl", [ROWS["qa"], ROWS["qa"], ROWS["alpaca"]])
    first, _ = import_seed_files([path])
    again, _ = import_seed_files([path])
    assert [e["id"] for e in first] == [e["id"] for e in again]
    assert len({e["id"] for e in first}) == 3


def test_utf16_without_bom_is_read_and_a_binary_file_is_reported(tmp_path: Path):
    utf16 = tmp_path / "utf16.jsonl"
    utf16.write_bytes((json.dumps(ROWS["qa"], ensure_ascii=False) + "\n").encode("utf-16-le"))  # no BOM
    binary = tmp_path / "blob.jsonl"
    binary.write_bytes(bytes(range(256)) * 8)
    examples, report = import_seed_files([utf16, binary])
    assert [(e["meta"]["question"], e["meta"]["answer"]) for e in examples] == [("贷款能否用于股票投资？", "不得。")]
    assert report.files["utf16.jsonl"]["imported"] == 1
    assert len(report.problems) == 1 and report.problems[0].startswith("blob.jsonl: unreadable file: not a text file")
    assert report.files["blob.jsonl"]["rows"] == 0 and "error" in report.files["blob.jsonl"]


def test_list_answers_are_accepted_and_unanswerable_rows_never_become_training_data(tmp_path: Path):
    path = _write_jsonl(tmp_path / "seed.jsonl", [
        {"question": "Who signs the loan?", "answer": ["The borrower.", "the borrower", "The borrower."]},
        {"instruction": "Annual fee?", "output": ["100 yuan"]},
        {"question": "Who founded the bank?", "answer": []},
        {"question": "When?", "answer": "n/a", "answerable": False},
        {"question": "Blank refs?", "answer": ["", " "]},
    ])
    examples, report = import_seed_files([path])
    assert [(e["meta"]["question"], e["meta"]["answer"], e["meta"]["answers"]) for e in examples] == [
        ("Who signs the loan?", "The borrower.", ["The borrower.", "the borrower"]),
        ("Annual fee?", "100 yuan", ["100 yuan"])]
    assert examples[0]["messages"][-1] == {"role": "assistant", "content": "The borrower."}
    assert [p.split(":")[1] for p in report.problems] == ["3", "4", "5"]
    assert "unanswerable question" in report.problems[0] and "project.test_set" in report.problems[0]
    assert "unanswerable question" in report.problems[1] and "empty 'answer'" in report.problems[2]


def test_test_file_keeps_unanswerable_questions_and_list_answers(tmp_path: Path):
    from verticalize.data.testset import load_test_set

    own = {"id": "own-1", "messages": [{"role": "user", "content": "Best branch?"},
                                       {"role": "assistant", "content": ""}],
           "meta": {"kind": "seed", "task": "qa", "question": "Best branch?", "answer": "", "answerable": False,
                    "doc_id": "d1", "chunk_ids": []}}
    own_list = {"id": "own-2", "messages": [{"role": "user", "content": "Rate?"},
                                            {"role": "assistant", "content": "3%"}],
                "meta": {"kind": "seed", "task": "qa", "question": "Rate?", "answer": ["3%", "three percent"],
                         "chunk_ids": []}}
    path = _write_jsonl(tmp_path / "test.jsonl", [
        {"question": "Who signs?", "answer": ["The borrower", "the borrower himself"]},
        {"question": "Who founded the bank?", "answer": []},
        {"messages": [{"role": "user", "content": "Opening hours?"}], "answerable": False},
        {"conversations": [{"from": "human", "value": "Fax number?"}, {"from": "gpt", "value": ""}],
         "meta": {"answerable": False}},
        own, own_list,
        {"text": "card lost", "label": "card", "answerable": False},
    ])
    examples, report = load_test_set(path)
    metas = [e["meta"] for e in examples]
    assert [(m["question"], m["answer"], m.get("answers"), m.get("answerable", True)) for m in metas] == [
        ("Who signs?", "The borrower", ["The borrower", "the borrower himself"], True),
        ("Who founded the bank?", "", [], False),
        ("Opening hours?", "", [], False),
        ("Fax number?", "", [], False),
        ("Best branch?", "", [], False),
        ("Rate?", "3%", ["3%", "three percent"], True)]
    assert examples[4]["id"] == "own-1" and metas[4]["doc_id"] == "d1"  # our own rows keep their provenance
    assert all(e["messages"] == [{"role": "user", "content": e["meta"]["question"]},
                                 {"role": "assistant", "content": ""}] for e in examples[1:5])
    assert report.problems == ["test.jsonl:7: a classification row cannot be unanswerable (it needs a label)"]


def test_test_file_squad_is_impossible_and_refused_rows_in_the_error(tmp_path: Path):
    from verticalize.data.testset import TestSetError, load_test_set

    squad = tmp_path / "squad2.json"
    squad.write_text(json.dumps({"version": "v2.0", "data": [{"title": "T", "paragraphs": [{"context": "c", "qas": [
        {"id": "a", "question": "Fee?", "answers": [{"text": "300"}, {"text": "300"}], "is_impossible": False},
        {"id": "b", "question": "Founder?", "answers": [], "is_impossible": True},
        {"id": "c", "question": "Broken?", "answers": []}]}]}]}), encoding="utf-8")
    examples, report = load_test_set(squad)
    assert [(e["id"], e["meta"]["answer"], e["meta"]["answers"], e["meta"].get("answerable", True))
            for e in examples] == [("a", "300", ["300"], True), ("b", "", [], False)]
    assert len(report.problems) == 1 and "data[0].paragraphs[0].qas[2]" in report.problems[0]
    assert "is_impossible" in report.problems[0]

    bad = _write_jsonl(tmp_path / "bad.jsonl", [{"question": "q"}, {"question": "", "answer": "a"}, "{oops",
                                                 {"colour": "blue"}])
    with pytest.raises(TestSetError) as err:
        load_test_set(bad)
    msg = str(err.value)
    assert "bad.jsonl:1: missing 'answer'" in msg and "bad.jsonl:2: empty 'question'" in msg
    assert "bad.jsonl:3: invalid JSON" in msg and "(and 1 more)" in msg and "bad.jsonl:4" not in msg
