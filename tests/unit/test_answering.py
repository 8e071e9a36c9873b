"""The one answering path: conversation layout, passage windows, refusals, and the RAFT training forms."""

from __future__ import annotations

from collections import Counter

from verticalize.answering import DEFAULT_REFUSAL, Passage, PromptStyle, build_messages, focus, is_refusal
from verticalize.config import load_config
from verticalize.data.context import contextualise
from verticalize.data.schema import make_example
from verticalize.kb.base import Hit

STYLE = PromptStyle("SYS", DEFAULT_REFUSAL, passage_tokens=200)


def test_without_passages_the_question_is_the_user_turn() -> None:
    assert build_messages("What fee?", STYLE) == [{"role": "system", "content": "SYS"},
                                                  {"role": "user", "content": "What fee?"}]


def test_passages_then_instruction_then_question_in_the_question_language() -> None:
    en = build_messages("What fee?", STYLE, passages=[Passage("The fee is 5 USD.", "a.md")])[-1]["content"]
    assert en.splitlines()[0] == "Passages:" and en.splitlines()[1] == "[1] The fee is 5 USD."
    assert en.endswith("copied from the passages.\nQuestion: What fee?")
    told = PromptStyle("SYS", DEFAULT_REFUSAL, refusal_instruction=True)
    assert build_messages("What fee?", told, passages=[Passage("x")])[-1]["content"].endswith(
        "reply: The documents do not contain the answer.\nQuestion: What fee?")
    zh = build_messages("年费多少？", STYLE, passages=[{"text": "年费200元。", "source": "b.md"}])[-1]["content"]
    assert zh.startswith("参考资料：\n[1] 年费200元。") and zh.endswith("简短回答问题。\n问题：年费多少？")


def test_client_system_and_history_are_kept() -> None:
    msgs = build_messages("Next?", STYLE, system="CLIENT", history=[{"role": "user", "content": "Hi"},
                                                                    {"role": "assistant", "content": "Hello"}])
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"] and msgs[0]["content"] == "CLIENT"


def test_focus_keeps_short_text_and_windows_long_text_around_the_question() -> None:
    assert focus("Short text.", "q", 50) == "Short text."
    long = " ".join(f"Sentence {i} talks about topic{i} only." for i in range(40))
    window = focus(long, "What about topic17?", 30)
    assert "topic17" in window and len(window) < len(long) / 4
    assert "topic3 " in focus(long, "What about topic17?", 30, must_contain="topic3 ")


def test_refusal_phrase_and_common_wordings_are_refusals() -> None:
    assert is_refusal("The documents do not contain the answer.", STYLE)
    assert is_refusal("资料中没有答案。", STYLE) and is_refusal("文中没有提到。", STYLE)
    assert not is_refusal("Rollo", STYLE) and not is_refusal("", STYLE)


class _KB:
    def __init__(self, chunks: list[dict]):
        self.chunks = chunks

    def search(self, query: str, k: int) -> list[Hit]:
        return [Hit(c["id"], c["doc_id"], c["source"], c["text"], 1.0 / (i + 1)) for i, c in enumerate(self.chunks)][:k]


def test_contextualise_makes_oracle_refusal_and_closed_book_forms() -> None:
    chunks = [{"id": f"c{i}", "doc_id": f"d{i}", "source": f"s{i}.txt", "text": f"Item {i} costs {i * 7} dollars."}
              for i in range(8)]
    examples = [make_example(f"How much does item {i} cost?", f"{i * 7} dollars", kind="synthetic",
                             generator="spans:number", chunk=chunks[i]) for i in range(1, 8)] * 1
    cfg = load_config(None, ["data.context.oracle_share=0.5", "data.context.closed_book_share=0.5"])
    out, counts = contextualise(examples * 6, {c["id"]: c for c in chunks}, _KB(chunks), cfg)
    forms = Counter(e["meta"]["form"] for e in out)
    assert forms["rag"] == counts["with_oracle"] and forms["refusal"] == counts["refusal"] > 0
    assert forms["closed"] == counts["closed_book"] > 0
    for ex in out:
        user, target = ex["messages"][0]["content"], ex["messages"][1]["content"]
        answer = ex["meta"]["answer"]
        if ex["meta"]["form"] == "rag":
            assert answer in user and target == answer and user.count("\n[") == 3  # oracle + 2 distractors
        elif ex["meta"]["form"] == "refusal":
            assert answer not in user and target == DEFAULT_REFUSAL["en"] and user.count("\n[") == 3
        else:
            assert user == ex["meta"]["question"]
    # deterministic: the same input gives the same forms
    again, _ = contextualise(examples * 6, {c["id"]: c for c in chunks}, _KB(chunks), cfg)
    assert [e["id"] for e in again] == [e["id"] for e in out]


def test_small_corpus_gets_several_forms_per_pair_and_near_miss_refusals() -> None:
    chunks = [{"id": f"c{i}", "doc_id": f"d{i}", "source": f"s{i}.txt",
               "text": f"Item {i} is sold in the northern market of the old town. Item {i} costs {i * 7} dollars. "
                       f"It was first made by a guild of smiths in the valley near the river."} for i in range(8)]
    examples = [make_example(f"How much does item {i} cost?", f"{i * 7} dollars", kind="synthetic",
                             generator="spans:number", chunk=chunks[i]) for i in range(1, 8)]
    cfg = load_config(None, ["data.context.oracle_share=0.5", "data.context.target_examples=21",
                             "data.context.near_miss_share=0.5"])
    out, counts = contextualise(examples, {c["id"]: c for c in chunks}, _KB(chunks), cfg)
    assert counts["forms_per_pair"] == 3
    context = [e for e in out if e["meta"]["form"] != "closed"]
    assert len(context) == 21 and len({e["id"] for e in context}) == 21
    assert Counter(e["meta"]["parent_id"] for e in context) == {ex["id"]: 3 for ex in examples}
    assert counts["near_miss_refusal"] > 0
    near = [e for e in context if e["meta"]["form"] == "refusal" and "northern market" in e["messages"][0]["content"]
            and f"Item {e['meta']['question'].split()[4]} is sold" in e["messages"][0]["content"]]
    assert near, "a near-miss shows the oracle's other sentences"
    for e in near:
        assert e["meta"]["answer"] not in e["messages"][0]["content"]
        assert e["messages"][1]["content"] == DEFAULT_REFUSAL["en"]
    # validation keeps one form per pair
    val, val_counts = contextualise(examples, {c["id"]: c for c in chunks}, _KB(chunks), cfg, train=False)
    assert len([e for e in val if e["meta"]["form"] != "closed"]) == 7 and "forms_per_pair" not in val_counts
