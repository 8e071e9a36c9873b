"""Test sets (data split, the user's JSONL or SQuAD JSON) and the prompts each rung sends."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from verticalize.artifacts import RunDir, write_jsonl
from verticalize.answering import DEFAULT_REFUSAL, PromptStyle
from verticalize.evaluate.prompts import OTHER_LABEL, build_conversation, few_shot_examples, map_to_label
from verticalize.evaluate.testsets import TestSetError, load_test_set, read_test_file


NO_ANSWER = 'no answer (mark an unanswerable question with "is_impossible": true)'


def _row(i: int, q: str, a: str, kind: str = "synthetic", task: str = "qa", **meta) -> dict:
    return {"id": f"r{i}", "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
            "meta": {"kind": kind, "task": task, "question": q, "answer": a, **meta}}


def test_jsonl_rows_of_every_shape_and_refusals_with_line_numbers(tmp_path: Path) -> None:
    f = tmp_path / "t.jsonl"
    f.write_text("\n".join([
        json.dumps(_row(1, "年费多少？", "300元", doc_id="d1", chunk_ids=["d1:0000"]), ensure_ascii=False),
        json.dumps({"question": "What is r?", "answer": ["8", "eight"]}),
        json.dumps({"instruction": "Classify: card lost", "label": "card"}),
        "{broken",
        json.dumps({"messages": [{"role": "user", "content": "q only"}]}),
        "",
        json.dumps([1, 2]),
    ]), encoding="utf-8")
    ts = read_test_file(f, "user")
    assert [e.question for e in ts.examples] == ["年费多少？", "What is r?", "Classify: card lost"]
    first, second, third = ts.examples
    assert first.references == ["300元"] and first.doc_id == "d1" and first.chunk_ids == ["d1:0000"]
    assert second.references == ["8", "eight"] and second.id == "line-2"
    assert third.task == "classification" and third.label == "card" and third.references == ["card"]
    assert [r["line"] for r in ts.refused] == [4, 5, 7]
    # The reasons are the shared reader's (verticalize.testsets), the same the data stage gives for this file.
    assert ts.refused[0]["reason"].startswith("invalid JSON")
    assert ts.refused[1]["reason"] == "'messages' must end with an assistant answer"
    assert ts.refused[2]["reason"] == "expected a JSON object, got list"


def test_squad_json_keeps_every_answer_and_refuses_unanswerable(tmp_path: Path) -> None:
    f = tmp_path / "squad.json"
    f.write_text(json.dumps({"version": "1", "data": [{"title": "卡", "paragraphs": [{"context": "...", "qas": [
        {"id": "a", "question": "年费？", "answers": [{"text": "300元", "answer_start": 0}, {"text": "三百元"}]},
        {"id": "b", "question": "无答案？", "answers": []}]}]}]}, ensure_ascii=False), encoding="utf-8")
    ts = read_test_file(f, "user")
    assert len(ts.examples) == 1 and ts.examples[0].references == ["300元", "三百元"]
    assert ts.examples[0].source == "卡" and ts.refused == [{"line": "b", "reason": NO_ANSWER}]


def test_squad_is_impossible_questions_are_kept_as_unanswerable(tmp_path: Path) -> None:
    f = tmp_path / "squad2.json"
    f.write_text(json.dumps({"version": "v2.0", "data": [{"title": "Cards", "paragraphs": [{"context": "...", "qas": [
        {"id": "a", "question": "Annual fee?", "answers": [{"text": "300 yuan", "answer_start": 0}],
         "is_impossible": False},
        {"id": "b", "question": "Who founded the bank?", "answers": [], "is_impossible": True,
         "plausible_answers": [{"text": "Mr. X", "answer_start": 3}]},
        {"id": "c", "question": "Broken?", "answers": []}]}]}]}), encoding="utf-8")
    ts = read_test_file(f, "user")
    assert [(e.id, e.answerable, e.references) for e in ts.examples] == [("a", True, ["300 yuan"]),
                                                                         ("b", False, [])]
    assert ts.n_unanswerable == 1 and ts.task == "qa"
    # Without is_impossible, a question without answers is still a broken row.
    assert ts.refused == [{"line": "c", "reason": NO_ANSWER}]


def test_jsonl_unanswerable_rows_and_list_answers(tmp_path: Path) -> None:
    unanswerable_own = _row(5, "Who founded the bank?", "", kind="seed", answerable=False, answers=[])
    f = tmp_path / "t.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in [
        {"question": "Who signs?", "answer": ["The borrower", "the borrower himself"]},   # 1 list answers
        {"question": "Who founded the bank?", "answer": []},                               # 2 unanswerable
        {"question": "When was it founded?", "answer": "n/a", "answerable": False},       # 3 unanswerable
        {"messages": [{"role": "user", "content": "Best branch?"}], "meta": {"answerable": False}},  # 4
        unanswerable_own,                                                                   # 5 data stage row
        {"question": "Empty list entries?", "answer": ["", " "]},                          # 6 refused
        {"question": "Contradiction?", "answer": [], "answerable": True},                  # 7 refused
        {"question": "card lost", "label": "card", "answerable": False},                    # 8 refused
        _row(9, "Rates?", "3%", answers=["3%", "three percent"]),                         # 9 every reference
    ]), encoding="utf-8")
    ts = read_test_file(f, "user")
    got = [(e.question, e.answerable, e.references) for e in ts.examples]
    assert got == [("Who signs?", True, ["The borrower", "the borrower himself"]),
                   ("Who founded the bank?", False, []),
                   ("When was it founded?", False, []),  # the declared flag wins over a placeholder answer
                   ("Best branch?", False, []),
                   ("Who founded the bank?", False, []),
                   ("Rates?", True, ["3%", "three percent"])]
    assert ts.n_unanswerable == 4 and ts.examples[4].id == "r5"
    assert [r["line"] for r in ts.refused] == [6, 7, 8]
    assert "empty 'answer'" in ts.refused[0]["reason"] and "answerable is true" in ts.refused[1]["reason"]
    assert "classification" in ts.refused[2]["reason"]


def test_only_unanswerable_questions_may_lack_references() -> None:
    from verticalize.evaluate.testsets import TestExample

    assert TestExample(id="x", question="q", references=[], answerable=False).answerable is False
    with pytest.raises(ValueError, match="needs a reference"):
        TestExample(id="x", question="q", references=[])


def test_test_set_precedence_kinds_and_errors(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    with pytest.raises(TestSetError, match="verticalize data build"):
        load_test_set(run)
    write_jsonl(run.dataset_split("test"), [_row(i, f"q{i}", f"a{i}") for i in range(5)])
    ts = load_test_set(run, max_examples=3)
    assert ts.kind == "synthetic" and len(ts.examples) == 3 and ts.task == "qa"
    write_jsonl(run.dataset_split("test"), [_row(i, f"q{i}", f"a{i}", kind="seed") for i in range(2)])
    assert load_test_set(run).kind == "human"  # every row human-written
    mine = tmp_path / "mine.jsonl"
    write_jsonl(mine, [{"question": "x", "answer": "y"}])
    assert load_test_set(run, user_file=mine).kind == "user"
    assert load_test_set(run, human_file=mine).kind == "human"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(TestSetError, match="no usable example"):
        read_test_file(empty, "user")
    with pytest.raises(TestSetError, match="not found"):
        read_test_file(tmp_path / "nope.jsonl", "user")


@dataclass
class _Hit:
    chunk_id: str
    source: str
    text: str
    score: float = 1.0


def test_conversations_per_rung() -> None:
    shots = [("Q1?", "A1"), ("Q2?", "A2")]
    hits = [_Hit("d1:0", "cards.md", " 年费300元。 "), _Hit("d2:0", "loans.md", "贷款需要收入证明。")]
    style = PromptStyle("SYS", DEFAULT_REFUSAL, passage_tokens=200)
    prompt = build_conversation("prompt", "年费多少？", style, few_shot=shots, hits=hits)
    assert [m["role"] for m in prompt] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert prompt[-1]["content"] == "年费多少？"  # the prompt rung gets no passages
    rag = build_conversation("rag", "年费多少？", style, few_shot=shots, hits=hits)
    assert len(rag) == 2 and rag[1]["content"] == ("参考资料：\n[1] 年费300元。\n[2] 贷款需要收入证明。\n\n"
                                                   "用资料原文中的词语简短回答问题。\n"
                                                   "问题：年费多少？")
    en = build_conversation("peft+rag", "What fee?", style, hits=hits[:1])
    assert en[1]["content"].startswith("Passages:\n[1] 年费300元。")
    assert en[1]["content"].endswith("Question: What fee?")
    assert build_conversation("peft", "What fee?", style, hits=hits) == [
        {"role": "system", "content": "SYS"}, {"role": "user", "content": "What fee?"}]
    labelled = build_conversation("prompt", "Card lost", style, labels=["card", "loan"])
    assert labelled[0]["content"] == "SYS\nAnswer with exactly one of these labels: card, loan"
    assert build_conversation("peft", "Card lost", style, labels=["card"])[0]["content"] == "SYS"


def test_few_shot_prefers_seed_examples_of_the_same_task(tmp_path: Path) -> None:
    train = tmp_path / "train.jsonl"
    write_jsonl(train, [_row(1, "syn q", "syn a"), _row(2, "seed q", "seed a", kind="seed"),
                        _row(3, "cls q", "card", kind="seed", task="classification", label="card"),
                        _row(4, "long " * 200, "x", kind="seed")])
    assert few_shot_examples(train, 2, "qa", 42) == [("seed q", "seed a"), ("syn q", "syn a")]
    assert few_shot_examples(train, 5, "classification", 42) == [("cls q", "card")]
    assert few_shot_examples(train, 0, "qa", 42) == [] and few_shot_examples(tmp_path / "x", 3, "qa", 1) == []


def test_map_to_label() -> None:
    labels = ["账户", "贷款", "信用卡"]
    assert map_to_label("贷款。", labels) == "贷款"
    assert map_to_label("这是信用卡问题，不是贷款", labels) == "信用卡"  # first label mentioned
    assert map_to_label("Billing.", ["billing", "network"]) == "billing"
    assert map_to_label("networkk", ["billing", "network"]) == "network"  # closest spelling
    assert map_to_label("no idea", ["billing", "network"]) == OTHER_LABEL


def test_fit_passages_drops_lowest_ranked_then_shortens_never_the_question() -> None:
    from verticalize.evaluate.prompts import fit_passages

    hits = [_Hit("a", "a.md", "甲" * 100), _Hit("b", "b.md", "乙" * 100), _Hit("c", "c.md", "丙" * 100)]

    def make(h):
        return build_conversation("rag", "问题？", PromptStyle("SYS", DEFAULT_REFUSAL, 10_000), hits=h)

    def chars(conv):  # a stand-in tokenizer: one token per character
        return sum(len(m["content"]) for m in conv)

    conv, changed = fit_passages(make, hits, chars, 10_000)
    assert changed == 0 and "丙" in conv[1]["content"]
    conv, changed = fit_passages(make, hits, chars, 300)  # room for two passages
    assert changed == 1 and "乙" in conv[1]["content"] and "丙" not in conv[1]["content"]
    conv, changed = fit_passages(make, hits, chars, 130)  # one passage, halved until it fits
    assert "乙" not in conv[1]["content"] and conv[1]["content"].count("甲") == 50
    assert conv[1]["content"].endswith("问题：问题？") and chars(conv) <= 130
    conv, _ = fit_passages(make, hits, chars, 5)  # nothing fits: no passages, question kept
    assert conv[1]["content"] == "问题？"
