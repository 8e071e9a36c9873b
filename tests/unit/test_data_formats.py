"""Exports to alpaca / sharegpt / LLaMA-Factory round-trip back to the same questions and answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from verticalize.artifacts import read_jsonl, write_jsonl
from verticalize.data.formats import ExportError, export_dataset
from verticalize.data.schema import make_example
from verticalize.data.seed_import import import_seed_files

SYSTEM = "You answer from the bank's rules."


def _dataset(tmp_path: Path) -> Path:
    data = tmp_path / "run" / "data"
    single = [make_example(f"问题{i}：年费多少？", f"{i}00元", kind="synthetic", generator="rules:number",
                           doc_id=f"d{i}", chunk_ids=[f"d{i}:0000"]) for i in range(3)]
    multi = make_example("Q2", "A2", kind="seed", generator="seed:messages", source="s.jsonl", messages=[
        {"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2"}, {"role": "assistant", "content": "A2"}])
    write_jsonl(data / "train.jsonl", single[:2] + [multi])
    write_jsonl(data / "validation.jsonl", single[2:])
    write_jsonl(data / "test.jsonl", [])
    return data


def _pairs(rows: list[dict]) -> list[tuple[str, str]]:
    return [(r["meta"]["question"], r["meta"]["answer"]) for r in rows]


@pytest.mark.parametrize("fmt", ["alpaca", "sharegpt"])
def test_export_round_trips_through_the_seed_importer(tmp_path: Path, fmt: str):
    data = _dataset(tmp_path)
    result = export_dataset(data, fmt, tmp_path / fmt, system_prompt=SYSTEM)
    assert result["rows"] == {"train": 3, "validation": 1, "test": 0}
    rows = list(read_jsonl(tmp_path / fmt / "train.jsonl"))
    assert all(r["system"] == SYSTEM for r in rows)
    if fmt == "alpaca":
        assert rows[0] == {"id": rows[0]["id"], "instruction": "问题0：年费多少？", "input": "", "output": "000元",
                           "system": SYSTEM}
        assert rows[2]["history"] == [["Q1", "A1"]]
    else:
        assert rows[2]["conversations"][0] == {"from": "human", "value": "Q1"}
        assert [t["from"] for t in rows[2]["conversations"]] == ["human", "gpt", "human", "gpt"]
    back, report = import_seed_files([tmp_path / fmt / "train.jsonl"])
    assert report.problems == []
    assert _pairs(back) == _pairs(list(read_jsonl(data / "train.jsonl")))


def test_llamafactory_dataset_info_describes_the_files(tmp_path: Path):
    data = _dataset(tmp_path)
    out = tmp_path / "lf"
    export_dataset(data, "llamafactory", out, system_prompt=SYSTEM, name="bank")
    info = json.loads((out / "dataset_info.json").read_text(encoding="utf-8"))
    assert sorted(info) == ["bank_test", "bank_train", "bank_validation"]
    entry = info["bank_train"]
    assert entry["formatting"] == "sharegpt"
    assert entry["columns"] == {"messages": "conversations", "system": "system"}
    tags = entry["tags"]
    # Read the file back the way LLaMA-Factory does: through the columns and tags the entry declares.
    rows = list(read_jsonl(out / entry["file_name"]))
    got = []
    for row in rows:
        turns = row[entry["columns"]["messages"]]
        users = [t[tags["content_tag"]] for t in turns if t[tags["role_tag"]] == tags["user_tag"]]
        bots = [t[tags["content_tag"]] for t in turns if t[tags["role_tag"]] == tags["assistant_tag"]]
        got.append((users[-1], bots[-1]))
        assert row[entry["columns"]["system"]] == SYSTEM
    assert got == _pairs(list(read_jsonl(data / "train.jsonl")))


def test_export_errors_are_clear(tmp_path: Path):
    with pytest.raises(ExportError, match="run `verticalize data build` first"):
        export_dataset(tmp_path / "empty", "alpaca", tmp_path / "out")
    with pytest.raises(ValueError, match="unknown export format 'csv'"):
        export_dataset(_dataset(tmp_path), "csv", tmp_path / "out")
