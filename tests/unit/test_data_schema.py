"""The one example builder: contract fields, provenance from a chunk, stable ids, and refused kinds/tasks."""

from __future__ import annotations

import pytest

from verticalize.data.schema import answer_of, make_example, problem_with, question_of

CHUNK = {"id": "d1:0003", "doc_id": "d1", "source": "loans.md", "text": "借款人应当按时还款。"}


def test_chunk_gives_provenance_and_the_id_is_stable() -> None:
    ex = make_example("借款人应当做什么？", "按时还款", kind="synthetic", generator="rules:obligation", chunk=CHUNK)
    assert ex["messages"] == [{"role": "user", "content": "借款人应当做什么？"},
                              {"role": "assistant", "content": "按时还款"}]
    meta = ex["meta"]
    assert (meta["source"], meta["doc_id"], meta["chunk_ids"]) == ("loans.md", "d1", ["d1:0003"])
    assert (meta["kind"], meta["task"], meta["generator"], meta["parent_id"]) == (
        "synthetic", "qa", "rules:obligation", None)
    assert problem_with(ex) is None and "label" not in meta
    again = make_example("借款人应当做什么？", "按时还款", kind="synthetic", generator="rules:obligation", chunk=CHUNK)
    other = make_example("借款人应当做什么？", "按时还款", kind="synthetic", generator="llm", chunk=CHUNK)
    assert ex["id"] == again["id"] != other["id"]
    # Built by hand from the same provenance: the same example.
    assert make_example("借款人应当做什么？", "按时还款", kind="synthetic", generator="rules:obligation",
                        source="loans.md", doc_id="d1", chunk_ids=["d1:0003"]) == ex


def test_classification_label_extra_meta_and_messages_fallback() -> None:
    ex = make_example("卡被盗刷了", "fraud", kind="seed", generator="seed:csv", task="classification", id="s-1",
                      answers=["fraud"])
    assert ex["id"] == "s-1" and ex["meta"]["label"] == "fraud" and ex["meta"]["answers"] == ["fraud"]
    bare = {"id": "x", "messages": [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"},
                                    {"role": "user", "content": "Q2"}, {"role": "assistant", "content": "A2"}]}
    assert (question_of(bare), answer_of(bare)) == ("Q2", "A2")


def test_unknown_kind_or_task_is_refused() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        make_example("Q", "A", kind="invented", generator="x")
    with pytest.raises(ValueError, match="task must be one of"):
        make_example("Q", "A", kind="seed", generator="x", task="ner")
