"""The route advisor: seed 003's rules on typical situations, ladder refinement, bad facts."""

from __future__ import annotations

import pytest

from verticalize.plan.advisor import ROUTES, FactsError, advise, parse_compute


def ranking(advice) -> list[str]:
    return [r.route for r in advice.ranked]


def reasons(advice, route: str) -> str:
    return " | ".join(next(r for r in advice.ranked if r.route == route).reasons)


def test_knowledge_that_changes_often_goes_to_rag():
    a = advise({"doc_pages": 300, "labelled_examples": 50, "knowledge_changes_often": True, "compute": "1xl4-24g"})
    assert a.route == "rag"
    assert "knowledge changes often" in reasons(a, "rag")
    assert ranking(a).index("peft") > ranking(a).index("peft+rag")   # stale weights are penalised
    assert a.facts["doc_tokens"] == 300 * 500
    assert sorted(ranking(a)) == sorted(ROUTES)


def test_few_labels_and_no_documents_means_prompt_engineering():
    a = advise({"labelled_examples": 30, "doc_tokens": 0, "budget": "low", "compute": "none"})
    assert a.route == "prompt"
    assert "no domain documents" in reasons(a, "rag")
    assert ranking(a)[-1] == "pretrain"


def test_small_corpus_fits_in_the_prompt():
    a = advise({"doc_tokens": 5_000, "labelled_examples": 20})
    assert a.route == "prompt"
    assert "fit in the prompt" in reasons(a, "prompt")


def test_classification_with_enough_labels_goes_to_peft():
    a = advise({"task": "classification", "labelled_examples": 2000, "doc_tokens": 0, "compute": "1xa100-80g",
                "latency_ms": 200})
    assert a.route == "peft"
    assert "prefix tuning" in reasons(a, "peft")


def test_style_and_terminology_with_documents_goes_to_peft_family():
    a = advise({"doc_tokens": 2_000_000, "labelled_examples": 1200, "style_or_format": True,
                "compute": "2xa100-80g"})
    assert a.route in ("peft", "peft+rag")
    assert set(ranking(a)[:2]) == {"peft", "peft+rag"}
    assert "terminology" in reasons(a, "peft")


def test_huge_own_corpus_many_gpus_and_high_budget_can_pretrain():
    a = advise({"doc_tokens": 20_000_000_000, "labelled_examples": 100_000, "compute": "256xh100-80g",
                "budget": "high"})
    assert a.route == "pretrain"
    assert "unique data asset" in reasons(a, "pretrain")


def test_full_finetuning_needs_gpus_and_thousands_of_labels():
    rich = advise({"doc_tokens": 1_000_000, "labelled_examples": 20_000, "compute": "8xa100-80g",
                   "model_params": 7e9, "budget": "high"})
    assert ranking(rich).index("full") < ranking(rich).index("prompt")
    assert "holds full fine-tuning states" in reasons(rich, "full")
    cpu = advise({"doc_tokens": 1_000_000, "labelled_examples": 20_000, "compute": "cpu", "model_params": 7e9})
    assert ranking(cpu).index("full") >= 4
    small_gpu = advise({"labelled_examples": 20_000, "compute": "1xl4-24g", "model_params": 7e9})
    assert "full fine-tuning needs ≈134 GB of states" in reasons(small_gpu, "full")


def test_ladder_results_outweigh_the_rules():
    facts = {"doc_pages": 300, "labelled_examples": 50, "knowledge_changes_often": True}
    ladder = {"rungs": {"prompt": {"f1": 0.20, "p99_latency_ms": 300}, "rag": {"f1": 0.35, "p99_latency_ms": 450},
                        "peft": {"f1": 0.70, "p99_latency_ms": 250}, "peft+rag": {"f1": 0.72, "p99_latency_ms": 900}},
              "gates": [{"goal": "accuracy", "metric": "f1", "op": ">=", "threshold": 0.6},
                        {"goal": "speed", "metric": "p99_latency_ms", "op": "<", "threshold": 500}],
              "recommendation": {"rung": "peft", "passes": True, "reason": "cheapest rung passing all 2 gate(s)"}}
    without = advise(facts)
    with_ladder = advise({**facts, "latency_ms": 500}, ladder)
    assert without.route == "rag"
    assert with_ladder.route == "peft" and with_ladder.ladder_used
    assert "measured f1 0.700" in reasons(with_ladder, "peft")
    assert "passes all 2 business gate(s)" in reasons(with_ladder, "peft")
    assert "measured P99 900 ms > target 500 ms" in reasons(with_ladder, "peft+rag")


@pytest.mark.parametrize("ladder", [{}, {"rungs": "oops"}, {"rungs": {"rag": {"f1": "high"}}, "recommendation": 3},
                                    {"rungs": {"rag": None, "peft": {"f1": 0.5}}}])
def test_malformed_ladders_are_ignored_not_fatal(ladder):
    a = advise({"doc_pages": 100}, ladder)
    assert a.route in ROUTES
    assert not a.ladder_used


def test_no_gate_passing_is_noted():
    ladder = {"rungs": {"rag": {"f1": 0.4}, "peft": {"f1": 0.5}},
              "gates": [{"metric": "f1", "op": ">=", "threshold": 0.9}],
              "recommendation": {"rung": "peft", "passes": False, "reason": "no rung passes all 1 gate(s)"}}
    a = advise({"doc_pages": 100}, ladder)
    assert any("no measured rung passes every business gate; peft comes closest" in n for n in a.notes)


def test_bad_facts_name_the_field():
    with pytest.raises(FactsError, match="unknown fact 'labeled_examples'"):
        advise({"labeled_examples": 10})
    with pytest.raises(FactsError, match="fact 'task'"):
        advise({"task": "translation"})
    with pytest.raises(FactsError, match="NxPROFILE"):
        advise({"compute": "x"})
    with pytest.raises(FactsError, match="unknown GPU .tpu-v5."):
        advise({"compute": "4xtpu-v5"})


def test_parse_compute():
    assert parse_compute("cpu") == ("cpu", 0)
    assert parse_compute("8xH100-80g") == ("h100-80g", 8)
    assert parse_compute("a100-80g") == ("a100-80g", 1)


def test_unknown_document_volume_is_not_treated_as_none():
    a = advise({"labelled_examples": 1000})
    assert a.facts["doc_tokens"] is None
    assert "no domain documents" not in reasons(a, "rag")
