"""Metrics against values computed by hand, in English and Chinese."""

from __future__ import annotations

import pytest

from verticalize.evaluate.metrics import (METRICS, answer_tokens, classification_report, dir_size_bytes,
                                          exact_match, get_metric, higher_is_better, mean_reciprocal_rank,
                                          normalize_answer, percentile, recall_at_k, register_metric, rouge_l,
                                          token_f1, tokens_per_second)


def test_registry_holds_every_metric_by_name_and_kind() -> None:
    assert {"exact_match", "f1", "rouge_l"} <= {n for n, m in METRICS.items() if m.kind == "qa"}
    assert {"accuracy", "macro_f1"} <= {n for n, m in METRICS.items() if m.kind == "classification"}
    assert {"recall@k", "mrr"} <= {n for n, m in METRICS.items() if m.kind == "retrieval"}
    assert get_metric("p99_latency_ms").higher_is_better is False
    assert higher_is_better("f1") and not higher_is_better("p99_latency_ms") and not higher_is_better("adapter_bytes")
    with pytest.raises(KeyError, match="unknown metric 'bleu'; known metrics: accuracy"):
        get_metric("bleu")
    with pytest.raises(ValueError, match="already registered"):
        register_metric("f1", "qa")(lambda p, r: 0.0)


def test_squad_normalisation_english_and_chinese_punctuation() -> None:
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    assert normalize_answer("“免收年费”。") == "免收年费"
    assert normalize_answer("３００元") == "300元"  # full-width digits (NFKC)
    assert normalize_answer("1,000 yuan") == "1000 yuan" and normalize_answer("3.5%") == "3.5"
    assert answer_tokens("年费是300元") == ["年", "费", "是", "300", "元"]  # one token per CJK character


def test_exact_match_en_zh() -> None:
    assert exact_match("The cat.", "cat") == 1.0
    assert exact_match("免收年费。", "免收年费") == 1.0
    assert exact_match("年费免收", "免收年费") == 0.0  # same characters, other order
    assert exact_match("cat", ["dog", "a cat"]) == 1.0  # best over references


def test_token_f1_en_zh_by_hand() -> None:
    # pred {cat, sat, on, mat} vs ref {cat, on, mat}: P = 3/4, R = 1 -> F1 = 6/7
    assert token_f1("the cat sat on the mat", "a cat on mat") == pytest.approx(6 / 7)
    # 九十天 vs 90天: common {天}: P = 1/3, R = 1/2 -> F1 = 0.4 (word-level tokens would give 0)
    assert token_f1("九十天", "90天") == pytest.approx(0.4)
    # 年费是300元 vs 300元: common {300, 元}: P = 2/5, R = 1 -> F1 = 4/7
    assert token_f1("年费是300元", "300元") == pytest.approx(4 / 7)
    assert token_f1("年费免收", "免收年费") == 1.0
    assert token_f1("", "cat") == 0.0 and token_f1("", "") == 1.0


def test_rouge_l_en_zh_by_hand() -> None:
    # LCS(mat on cat, cat on mat) = 1 ('on'): P = R = 1/3 -> F = 1/3, although token F1 is 1
    assert rouge_l("mat on cat", "cat on mat") == pytest.approx(1 / 3)
    assert token_f1("mat on cat", "cat on mat") == 1.0
    # LCS(年费免收, 免收年费) = 2: P = R = 1/2 -> 0.5
    assert rouge_l("年费免收", "免收年费") == pytest.approx(0.5)
    # LCS(逾期九十天停止计息, 逾期90天停止计息) = 逾期天停止计息 = 7 of 9 and 8 tokens -> 2·7/(9+8)
    assert rouge_l("逾期九十天停止计息", "逾期90天停止计息") == pytest.approx(14 / 17)


def test_classification_report_by_hand() -> None:
    golds = ["账户", "账户", "贷款", "贷款", "信用卡"]
    preds = ["账户", "贷款", "贷款", "贷款", "(other)"]
    rep = classification_report(golds, preds, ["账户", "贷款", "信用卡"])
    assert rep["accuracy"] == pytest.approx(3 / 5)
    assert rep["per_class"]["账户"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert rep["per_class"]["贷款"]["precision"] == pytest.approx(2 / 3) and rep["per_class"]["贷款"]["recall"] == 1
    assert rep["per_class"]["信用卡"]["f1"] == 0.0
    assert rep["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 0.0) / 3)
    assert rep["confusion"]["账户"] == {"账户": 1, "贷款": 1, "信用卡": 0, "(other)": 0}
    assert rep["confusion"]["信用卡"]["(other)"] == 1
    assert get_metric("accuracy").fn(["a", "b"], ["a", "a"]) == 0.5
    assert get_metric("macro_f1").fn(["a", "b"], ["a", "a"], ["a", "b"]) == pytest.approx((2 / 3 + 0) / 2)


def test_retrieval_recall_at_k_and_mrr_by_hand() -> None:
    ranked = [["c1", "c2", "c3"], ["c4", "c5", "c6"], ["c7", "c8", "c9"]]
    gold = [["c2"], ["c9"], ["c7", "c8"]]
    assert recall_at_k(ranked, gold, 2) == pytest.approx((1 + 0 + 1) / 3)
    assert recall_at_k(ranked, gold, 1) == pytest.approx((0 + 0 + 0.5) / 3)
    assert mean_reciprocal_rank(ranked, gold) == pytest.approx((1 / 2 + 0 + 1) / 3)


def test_cost_metrics(tmp_path) -> None:
    lat = [400.0, 100.0, 300.0, 200.0]
    assert percentile(lat, 50) == 250.0
    assert get_metric("p95_latency_ms").fn(lat) == pytest.approx(385.0)  # 300 + 0.85·100
    assert get_metric("p99_latency_ms").fn(lat) == pytest.approx(397.0)
    assert tokens_per_second(100, 4.0) == 25.0 and tokens_per_second(5, 0) == 0.0
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "w.bin").write_bytes(b"x" * 1000)
    (tmp_path / "a" / "c.json").write_bytes(b"{}")
    assert dir_size_bytes(tmp_path / "a") == 1002 and dir_size_bytes(tmp_path / "none") == 0


def test_ladder_qa_metrics_answerable_only_f1_refusal_and_false_refusal_rates() -> None:
    from dataclasses import dataclass

    from verticalize.answering import PromptStyle
    from verticalize.evaluate.ladder import _prediction_rows, _rung_metrics
    from verticalize.evaluate.testsets import TestExample

    @dataclass
    class Gen:
        text: str
        new_tokens: int = 4
        latency_s: float = 0.1
        batch: int = 0

    refusal = "The documents do not contain the answer."
    cases = [  # (question, references, answerable, prediction)
        ("Capital?", ["Paris"], True, "Paris"),                               # f1 1, em 1
        ("Who signs?", ["The borrower"], True, "the borrower"),               # f1 1, em 1
        ("What do they say?", ["documents"], True, refusal),                  # false refusal: 0 (not ~0.29)
        ("Capital again?", ["Paris"], True, "London"),                        # wrong: 0
        ("Who founded it?", [], False, refusal),                              # right refusal
        ("When was it founded?", [], False, "In 1901, by Mr. X."),            # invented
        ("谁创立的？", [], False, "资料中没有答案。"),                          # right refusal, in Chinese
    ]
    examples = [TestExample(id=f"q{i}", question=q, references=refs, answerable=ok)
                for i, (q, refs, ok, _) in enumerate(cases)]
    gens = [Gen(p) for *_, p in cases]
    rows = _prediction_rows("prompt", examples, gens, None, [])
    assert [r["answerable"] for r in rows] == [True] * 4 + [False] * 3
    assert [r["refused"] for r in rows] == [False, False, True, False, True, False, True]
    assert rows[2]["scores"] == {m: 0.0 for m in rows[0]["scores"]}  # a refusal on an answerable question
    assert "scores" not in rows[4] and rows[4]["reference"] == [refusal] and rows[6]["reference"] == ["资料中没有答案。"]
    m = _rung_metrics("prompt", rows, gens, "qa", [], None, None)
    assert m["f1"] == pytest.approx(0.5) and m["exact_match"] == pytest.approx(0.5)  # over the 4 answerable
    assert m["rouge_l"] == pytest.approx(0.5)
    assert m["refusal_rate"] == pytest.approx(2 / 3) and m["false_refusal_rate"] == pytest.approx(1 / 4)
    assert (m["n_answerable"], m["n_unanswerable"]) == (4, 3)

    # No unanswerable question: refusal_rate is not measured; the configured phrase counts as a refusal.
    style = PromptStyle(system_prompt="S", refusal={"en": "Not in my files.", "zh": "不在文件里。"})
    answerable = examples[:2]
    rows = _prediction_rows("rag", answerable, [Gen("Paris"), Gen("Not in my files.")], None, [], style)
    assert [r["refused"] for r in rows] == [False, True]
    assert _prediction_rows("rag", answerable[1:], [Gen("Not in my files.")], None, [])[0]["refused"] is False
    m = _rung_metrics("rag", rows, [Gen("Paris"), Gen("x")], "qa", [], None, None)
    assert m["refusal_rate"] is None and m["false_refusal_rate"] == 0.5 and m["f1"] == 0.5
    assert (m["n_answerable"], m["n_unanswerable"]) == (2, 0)
    # Only unanswerable questions: the answerable-only quality metrics are not measured.
    rows = _prediction_rows("rag", examples[4:5], [Gen("Not in my files.")], None, [], style)
    m = _rung_metrics("rag", rows, [Gen("x")], "qa", [], None, None)
    assert m["f1"] is None and m["false_refusal_rate"] is None and m["refusal_rate"] == 1.0
