"""Retrieval metrics on constructed cases; question files in our JSONL and SQuAD forms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from verticalize.config import KBConfig
from verticalize.kb import Hit, KBError, build_kb, evaluate_kb, load_questions, retrieval_metrics
from verticalize.kb.evaluation import Question, first_relevant_rank


def hit(text: str, doc: str = "d") -> Hit:
    return Hit(chunk_id=f"{doc}:0000", doc_id=doc, source=f"{doc}.md", text=text, score=1.0)


def test_metrics_from_ranks_hand_computed():
    m = retrieval_metrics([1, 3, None, 2, 7], ks=[1, 5])
    assert m["recall@1"] == 0.2 and m["recall@5"] == 0.6
    # MRR counts only ranks within the deepest cut-off (5): (1 + 1/3 + 1/2) / 5
    assert m["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 2) / 5, abs=1e-4)
    assert retrieval_metrics([], ks=[1]) == {"recall@1": 0.0, "mrr": 0.0}


def test_relevance_by_normalised_span_or_gold_doc():
    hits = [hit("逾期超过九十天", "a"), hit("银行应当在 4 分钟。内 处理", "b"), hit("无关", "gold")]
    q = Question(id="1", question="多久?", answers=["4分钟"])
    assert first_relevant_rank(q, hits) == 2                      # whitespace/punctuation ignored
    q_doc = Question(id="2", question="?", answers=["not there"], doc_id="gold")
    assert first_relevant_rank(q_doc, hits) == 3
    assert first_relevant_rank(q_doc, hits, match="span") is None
    q_both = Question(id="3", question="?", answers=["4分钟"], doc_id="gold")
    assert first_relevant_rank(q_both, hits, match="doc") == 3
    assert first_relevant_rank(q_both, hits, match="either") == 2


def test_jsonl_questions_in_our_example_format(tmp_path: Path):
    good = {"id": "q1", "messages": [{"role": "user", "content": "年费多少？"},
                                     {"role": "assistant", "content": "每年100元"}],
            "meta": {"kind": "synthetic", "task": "qa", "question": "年费多少？", "answer": "100元", "doc_id": "d1"}}
    from_messages = {"id": "q2", "messages": good["messages"], "meta": {}}
    cls = {"id": "q3", "messages": good["messages"], "meta": {"task": "classification", "label": "fee"}}
    path = tmp_path / "test.jsonl"
    path.write_text("\n".join([json.dumps(good, ensure_ascii=False), json.dumps(from_messages, ensure_ascii=False),
                               json.dumps(cls), "{broken", json.dumps({"question": "?", "answer": "。"})]) + "\n",
                    encoding="utf-8")
    questions, refused = load_questions(path)
    assert [(q.id, q.question, q.answers, q.doc_id) for q in questions] == [
        ("q1", "年费多少？", ["100元"], "d1"), ("q2", "年费多少？", ["每年100元"], None)]
    assert [r["where"] for r in refused] == ["line 3", "line 4", "line 5"]
    assert "classification" in refused[0]["reason"] and "not valid JSON" in refused[1]["reason"]
    assert "cannot be judged" in refused[2]["reason"]


def test_squad_questions(tmp_path: Path):
    squad = {"version": "v1", "data": [{"title": "t", "paragraphs": [{"context": "c", "qas": [
        {"id": "s1", "question": "谁?", "answers": [{"text": "张三", "answer_start": 0}]},
        {"id": "s2", "question": "", "answers": [{"text": "x", "answer_start": 0}]},
        {"id": "s3", "question": "何时?", "answers": []}]}]}]}
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(squad, ensure_ascii=False), encoding="utf-8")
    questions, refused = load_questions(path)
    assert [(q.id, q.answers) for q in questions] == [("s1", ["张三"])]
    assert [r["where"] for r in refused] == ["data[0].paragraphs[0].qas[1]", "data[0].paragraphs[0].qas[2]"]
    (tmp_path / "bad.json").write_text('{"nope": 1}', encoding="utf-8")
    with pytest.raises(KBError, match="expected SQuAD JSON"):
        load_questions(tmp_path / "bad.json")


def test_evaluate_kb_end_to_end_on_a_constructed_case(tmp_path: Path):
    texts = {"fees": "信用卡年费为每年100元，刷卡满六次免年费。", "loans": "贷款申请应当提供收入证明。",
             "ops": "Restart the payment service with systemctl restart payment."}
    chunks = tmp_path / "chunks.jsonl"
    chunks.write_text("".join(json.dumps({"id": f"{d}:0000", "doc_id": d, "source": f"{d}.md", "text": t,
                                          "start": 0}, ensure_ascii=False) + "\n" for d, t in texts.items()),
                      encoding="utf-8")
    build_kb(chunks, tmp_path / "kb", KBConfig())
    questions = [("信用卡年费多少钱？", "100元"),               # found at rank 1
                 ("How do I restart the payment service?", "systemctl restart payment"),  # rank 1
                 ("收入证明 信用卡年费 刷卡", "收入证明"),       # fees outranks loans: rank 2
                 ("火星的卫星叫什么？", "火卫一")]              # not found
    qfile = tmp_path / "q.jsonl"
    qfile.write_text("".join(json.dumps({"question": q, "answer": a}, ensure_ascii=False) + "\n"
                             for q, a in questions), encoding="utf-8")
    report = evaluate_kb(tmp_path / "kb", qfile, ks=[1, 2], save=True)
    assert report["questions"] == 4
    assert report["metrics"] == {"recall@1": 0.5, "recall@2": 0.75, "mrr": pytest.approx((1 + 1 + 0.5) / 4)}
    assert [m["question"] for m in report["misses"]] == ["火星的卫星叫什么？"]
    assert json.loads((tmp_path / "kb" / "eval.json").read_text(encoding="utf-8"))["metrics"]["recall@2"] == 0.75
    with pytest.raises(KBError, match="positive integers"):
        evaluate_kb(tmp_path / "kb", qfile, ks=[0])
