"""Business gates and the recommendation on constructed ladder results: pass, fail, none passing."""

from __future__ import annotations

import pytest

from verticalize.config import GateConfig
from verticalize.evaluate.gates import COST_ORDER, check_gates, gap_to_gate, recommend

RUNGS = {
    "peft+rag": {"f1": 0.95, "p99_latency_ms": 600.0},
    "prompt": {"f1": 0.50, "p99_latency_ms": 300.0},
    "rag": {"f1": 0.80, "p99_latency_ms": 400.0},
    "peft": {"f1": 0.90, "p99_latency_ms": 350.0},
}
F1 = GateConfig(goal="提升条款解析精度", metric="f1", op=">=", threshold=0.85)
LATENCY = GateConfig(goal="缩短响应时延", metric="p99_latency_ms", op="<", threshold=500)


def test_gap_to_gate_each_comparison() -> None:
    assert gap_to_gate(0.80, ">=", 0.85) == pytest.approx(0.05)
    assert gap_to_gate(0.90, ">=", 0.85) == 0.0
    assert gap_to_gate(0.85, ">", 0.85) == 0.0  # on the boundary: fails but no measurable distance
    assert gap_to_gate(600, "<", 500) == 100 and gap_to_gate(400, "<=", 500) == 0
    assert gap_to_gate(3, "==", 5) == 2


def test_every_gate_checked_against_every_rung() -> None:
    results = check_gates(RUNGS, [F1, LATENCY])
    assert [g["goal"] for g in results] == ["提升条款解析精度", "缩短响应时延"]
    f1 = results[0]["results"]
    assert {r: v["passed"] for r, v in f1.items()} == {"peft+rag": True, "prompt": False, "rag": False,
                                                      "peft": True}
    assert f1["rag"]["gap"] == pytest.approx(0.05) and f1["rag"]["value"] == 0.8
    assert results[1]["results"]["peft+rag"] == {"value": 600.0, "passed": False, "gap": 100.0}


def test_pass_recommends_cheapest_rung_passing_all_gates() -> None:
    rec = recommend(RUNGS, check_gates(RUNGS, [F1, LATENCY]))
    assert rec["rung"] == "peft" and rec["passes"] is True and rec["gaps"] == []
    assert "cheaper rungs fail: prompt, rag" in rec["reason"]
    # peft+rag has the best F1 but is dearer and misses the latency gate; with the latency gate gone,
    # peft (cheaper than peft+rag) still wins.
    assert recommend(RUNGS, check_gates(RUNGS, [F1]))["rung"] == "peft"
    assert COST_ORDER == ("prompt", "rag", "peft", "peft+rag", "full")


def test_cheap_rung_wins_when_it_passes() -> None:
    gates = [GateConfig(goal="good enough", metric="f1", op=">=", threshold=0.5)]
    rec = recommend(RUNGS, check_gates(RUNGS, gates))
    assert rec["rung"] == "prompt" and rec["passes"] and "cheaper" not in rec["reason"]


def test_none_passing_names_best_rung_and_gaps() -> None:
    strict = GateConfig(goal="近乎完美", metric="f1", op=">=", threshold=0.99)
    rec = recommend(RUNGS, check_gates(RUNGS, [strict, LATENCY]))
    # prompt, rag and peft pass one gate (latency); among them peft has the best F1.
    assert rec["rung"] == "peft" and rec["passes"] is False
    assert rec["gaps"] == [{"goal": "近乎完美", "metric": "f1", "op": ">=", "threshold": 0.99, "value": 0.9,
                            "gap": pytest.approx(0.09)}]
    assert "no rung passes all 2 gate(s)" in rec["reason"]


def test_unmeasured_metric_fails_with_reason_and_no_gates_picks_best_quality() -> None:
    gate = GateConfig(goal="judge", metric="judge_score", op=">=", threshold=0.5)
    res = check_gates(RUNGS, [gate])[0]["results"]["prompt"]
    assert res["passed"] is False and "was not measured" in res["reason"]
    rec = recommend(RUNGS, [])
    assert rec["rung"] == "peft+rag" and rec["passes"] and "no gates configured" in rec["reason"]
    cls = {"prompt": {"accuracy": 0.4}, "peft": {"accuracy": 0.9}}
    assert recommend(cls, [], task="classification")["rung"] == "peft"
    assert recommend({}, [])["rung"] is None


def test_gates_accept_plain_dicts_and_reject_unknown_comparison() -> None:
    ok = check_gates(RUNGS, [{"goal": "g", "metric": "f1", "op": ">", "threshold": 0.9}])
    assert ok[0]["results"]["peft"]["passed"] is False and ok[0]["results"]["peft+rag"]["passed"] is True
    with pytest.raises(ValueError, match="unknown comparison '=>'"):
        check_gates(RUNGS, [{"goal": "g", "metric": "f1", "op": "=>", "threshold": 0.9}])


REFUSAL_RUNGS = {  # as the ladder writes them for a test set with unanswerable questions
    "prompt": {"f1": 0.50, "refusal_rate": 0.25, "false_refusal_rate": 0.05, "n_answerable": 20,
               "n_unanswerable": 4},
    "rag": {"f1": 0.70, "refusal_rate": 0.75, "false_refusal_rate": 0.30, "n_answerable": 20, "n_unanswerable": 4},
    "peft+rag": {"f1": 0.80, "refusal_rate": 1.0, "false_refusal_rate": 0.10, "n_answerable": 20,
                 "n_unanswerable": 4},
}
SAYS_NOT_IN_DOCS = GateConfig(goal="不编造", metric="refusal_rate", op=">=", threshold=0.8)
FEW_FALSE_REFUSALS = GateConfig(goal="不误拒", metric="false_refusal_rate", op="<=", threshold=0.15)


def test_refusal_gates_pass_fail_and_recommend() -> None:
    refusal, false_refusal = check_gates(REFUSAL_RUNGS, [SAYS_NOT_IN_DOCS, FEW_FALSE_REFUSALS])
    assert {r: v["passed"] for r, v in refusal["results"].items()} == {"prompt": False, "rag": False,
                                                                      "peft+rag": True}
    assert refusal["results"]["rag"]["gap"] == pytest.approx(0.05)
    assert {r: v["passed"] for r, v in false_refusal["results"].items()} == {"prompt": True, "rag": False,
                                                                            "peft+rag": True}
    assert false_refusal["results"]["rag"]["gap"] == pytest.approx(0.15)
    rec = recommend(REFUSAL_RUNGS, [refusal, false_refusal])
    assert rec["rung"] == "peft+rag" and rec["passes"] is True


def test_refusal_gate_without_unanswerable_questions_is_not_measured_and_never_passes() -> None:
    rungs = {"prompt": {"f1": 0.9, "refusal_rate": None, "false_refusal_rate": 0.0, "n_answerable": 10,
                        "n_unanswerable": 0},
             "rag": {"f1": 0.95, "refusal_rate": None, "false_refusal_rate": 0.1, "n_answerable": 10,
                     "n_unanswerable": 0}}
    (gate,) = check_gates(rungs, [SAYS_NOT_IN_DOCS])
    res = gate["results"]["prompt"]
    assert res["passed"] is False and res["measured"] is False and res["value"] is None and res["gap"] is None
    assert "not measured" in res["reason"] and "no unanswerable question" in res["reason"]
    rec = recommend(rungs, [gate])
    assert rec["passes"] is False and rec["rung"] == "rag"  # best f1 among equals
    assert rec["gaps"][0]["measured"] is False and "no unanswerable question" in rec["gaps"][0]["reason"]
    # A measured gate beside it still passes normally.
    (f1,) = check_gates(rungs, [F1])
    assert all(v["passed"] and "measured" not in v for v in f1["results"].values())
    # f1 is a mean over answerable questions: a test set of unanswerable ones only has none.
    only = {"prompt": {"f1": None, "refusal_rate": 1.0, "n_answerable": 0, "n_unanswerable": 3}}
    res = check_gates(only, [F1])[0]["results"]["prompt"]
    assert res["measured"] is False and "no answerable question" in res["reason"]


def test_false_refusal_rate_is_lower_is_better() -> None:
    from verticalize.evaluate.gates import metric_higher_is_better

    assert metric_higher_is_better("refusal_rate") is True
    assert metric_higher_is_better("false_refusal_rate") is False
    assert metric_higher_is_better("f1") is True and metric_higher_is_better("p99_latency_ms") is False
