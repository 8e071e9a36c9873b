"""Ladder rungs as a type (verticalize.rungs): parsing, what each rung uses, the gateway's mapping."""

from __future__ import annotations

import pytest

from verticalize.config import EvalConfig
from verticalize.evaluate.gates import COST_ORDER
from verticalize.rungs import (DEFAULT_LADDER, FULL, PEFT, PEFT_RAG, PROMPT, RAG, RUNG_NAMES, RUNGS, Rung,
                               UnknownRungError, is_rung)


def test_names_and_cost_order():
    assert RUNG_NAMES == ("prompt", "rag", "peft", "peft+rag", "full") == COST_ORDER
    assert DEFAULT_LADDER == ("prompt", "rag", "peft", "peft+rag") == tuple(EvalConfig().rungs)
    assert [r.cost_rank for r in RUNGS] == list(range(len(RUNGS)))
    assert str(PEFT_RAG) == "peft+rag"


def test_what_each_rung_uses():
    assert [r.name for r in RUNGS if r.uses_knowledge_base] == ["rag", "peft+rag"]
    assert [r.name for r in RUNGS if r.uses_adapter] == ["peft", "peft+rag"]
    assert [r.name for r in RUNGS if r.trained] == ["peft", "peft+rag", "full"]
    assert [r.name for r in RUNGS if r.uses_few_shot] == ["prompt"]
    assert FULL.uses_full_model and not FULL.uses_adapter


def test_parse():
    assert Rung.parse("peft+rag") is PEFT_RAG and Rung.parse(RAG) is RAG
    assert is_rung("full") and not is_rung("lora")
    with pytest.raises(UnknownRungError) as e:
        Rung.parse("peft-rag")
    assert "peft-rag" in str(e.value) and ", ".join(RUNG_NAMES) in str(e.value)
    with pytest.raises(ValueError):
        Rung.parse("")


def test_gateway_mapping():
    assert Rung.serving(tuned=False, rag=False) is PROMPT
    assert Rung.serving(tuned=False, rag=True) is RAG
    assert Rung.serving(tuned=True, rag=False) is PEFT
    assert Rung.serving(tuned=True, rag=True) is PEFT_RAG
