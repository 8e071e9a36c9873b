"""The packaged demo domain (Harbor Bay Bank): documents, seed and test sets, tickets and the two project configs."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from importlib import resources
from pathlib import Path

import pytest

from verticalize.config import load_config

DEMO = Path(str(resources.files("verticalize") / "examples" / "demo"))
LABELS = {"card_fee", "loan_application", "account_security", "it_outage", "other"}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_documents_are_packaged_bilingual_and_sized():
    docs = sorted((DEMO / "docs").iterdir())
    assert {d.suffix for d in docs} == {".md", ".txt"} and len(docs) >= 6
    total = sum(d.stat().st_size for d in docs)
    assert 40_000 <= total <= 80_000, total
    text = {d.name: d.read_text(encoding="utf-8") for d in docs}
    zh = [n for n, t in text.items() if len(re.findall(r"[\u4e00-\u9fff]", t)) > 0.3 * len(t)]
    assert len(zh) >= 3 and len(docs) - len(zh) >= 3
    rules = text["hbb_credit_card_rules_zh.md"]
    assert "第一条" in rules and "是指" in rules and "应当" in rules and "不得" in rules
    assert all("fictional" in t or "虚构" in t for t in text.values())  # every file says it is invented


@pytest.mark.parametrize("name,low,high", [("seed/seed.jsonl", 70, 100), ("test/test.jsonl", 35, 50)])
def test_qa_files_use_the_example_format_and_cite_their_documents(name, low, high):
    rows = _jsonl(DEMO / name)
    assert low <= len(rows) <= high
    assert len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        user, assistant = r["messages"]
        assert (user["role"], assistant["role"]) == ("user", "assistant")
        meta = r["meta"]
        assert meta["kind"] == "seed" and meta["task"] == "qa"
        assert (meta["question"], meta["answer"]) == (user["content"], assistant["content"])
        assert len(meta["answer"]) <= 90  # short, exact facts
        doc = (DEMO / "docs" / meta["source"]).read_text(encoding="utf-8")
        for number in re.findall(r"\d[\d,.:]*\d|\d", meta["answer"]):
            assert number in doc, (r["id"], number)
    langs = Counter("zh" if re.search(r"[\u4e00-\u9fff]", r["meta"]["question"]) else "en" for r in rows)
    assert min(langs.values()) >= 0.3 * len(rows)


def test_test_questions_are_not_seed_questions():
    seeds = {r["meta"]["question"] for r in _jsonl(DEMO / "seed" / "seed.jsonl")}
    tests = {r["meta"]["question"] for r in _jsonl(DEMO / "test" / "test.jsonl")}
    assert not seeds & tests


def test_ticket_sets_are_balanced_and_disjoint():
    def read(name):
        with open(DEMO / "classification" / name, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            assert reader.fieldnames == ["text", "label"]
            return [(row["text"], row["label"]) for row in reader]

    train, test = read("tickets_train.csv"), read("tickets_test.csv")
    assert 180 <= len(train) <= 240 and 50 <= len(test) <= 70
    for rows in (train, test):
        counts = Counter(label for _, label in rows)
        assert set(counts) == LABELS and max(counts.values()) - min(counts.values()) <= 2
    assert not {t for t, _ in train} & {t for t, _ in test}
    as_jsonl = _jsonl(DEMO / "classification" / "tickets_test.jsonl")
    assert [(r["meta"]["question"], r["meta"]["label"]) for r in as_jsonl] == test


def test_demo_configs_load_and_point_at_packaged_files():
    qa = load_config(DEMO / "demo.yaml")
    assert qa.model.base == "smollm2-135m-instruct" and qa.train.method == "lora"
    assert [Path(p) for p in qa.project.docs] == [DEMO / "docs"]
    assert Path(qa.project.seed_data[0]).is_file() and Path(qa.project.test_set).is_file()
    assert qa.eval.rungs == ["prompt", "rag", "peft", "peft+rag"] and qa.eval.max_examples <= 40
    assert qa.train.max_steps <= 250 and qa.train.batch_tokens <= 1024
    cls = load_config(DEMO / "classification.yaml")
    assert cls.data.task == "classification" and set(cls.data.labels) == LABELS
    assert Path(cls.project.seed_data[0]).is_file() and Path(cls.project.test_set).is_file()
