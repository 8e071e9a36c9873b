"""The grounding filter: unsupported, empty and leaking pairs are dropped and counted by reason."""

from __future__ import annotations

from verticalize.data.schema import make_example
from verticalize.data.grounding import grounding_filter, support_share

CHUNKS = {
    "zh:0000": {"id": "zh:0000", "doc_id": "zh", "source": "zh.md", "text": "信用卡年费为100元，一年内刷卡六次可免收。"},
    "en:0000": {"id": "en:0000", "doc_id": "en", "source": "en.md",
                "text": "The annual fee for the gold card is 100 USD. Late payments incur a 5% charge."},
}


def _ex(question: str, answer: str, chunk_id: str = "zh:0000") -> dict:
    chunk = CHUNKS.get(chunk_id, {"id": chunk_id})
    return make_example(question, answer, kind="synthetic", generator="llm", chunk=chunk)


def test_support_share_counts_answer_tokens_found_in_the_chunk() -> None:
    assert support_share("100元", CHUNKS["zh:0000"]["text"]) == 1.0
    assert support_share("200元", CHUNKS["zh:0000"]["text"]) == 0.5  # "200" is missing, 元 is present
    assert support_share("The GOLD card: 100 usd", CHUNKS["en:0000"]["text"]) == 1.0
    assert support_share("It is 250 dollars", CHUNKS["en:0000"]["text"]) == 1 / 4


def test_numbers_glued_to_words_are_matched_like_standalone_numbers() -> None:
    context = "2023年全市GDP为4.8亿元，同比增长5.2%。"
    assert support_share("GDP4.8亿", context) == 1.0       # gdp, 4.8, 亿: not "gdp4" + "8"
    assert support_share("GDP 4.8 亿元", "GDP4.8亿元") == 1.0
    assert support_share("GDP4.9亿", context) == 2 / 3      # the wrong amount is the one missing token
    chunks = {"c:0000": {"id": "c:0000", "doc_id": "c", "source": "c.md", "text": context}}
    right = make_example("全市GDP是多少？", "GDP4.8亿元", kind="synthetic", generator="llm", chunk=chunks["c:0000"])
    wrong = make_example("全市GDP是多少？", "GDP4.9亿元", kind="synthetic", generator="llm", chunk=chunks["c:0000"])
    kept, dropped = grounding_filter([right, wrong], chunks, threshold=0.6)
    assert kept == [right] and dropped == {"number_not_in_chunk": 1}


def test_filter_drops_by_reason_and_keeps_order() -> None:
    examples = [
        _ex("信用卡年费是多少？", "100元"),                                   # kept
        _ex("信用卡年费是多少？", "信用卡年费为两百元人民币"),                # invented amount
        _ex("年费是多少？", "   "),                                           # empty answer
        _ex("信用卡年费为100元吗？", "100元"),                                # question gives the answer away
        _ex("What is the annual fee for the gold card?", "100 USD", "en:0000"),  # kept
        _ex("What is the late charge?", "a flat fee plus interest on the balance", "en:0000"),
        _ex("What is the late charge?", "a 10% charge", "en:0000"),           # wrong number, most words found
        _ex("Where is it?", "somewhere", "gone:0000"),                       # chunk unknown
    ]
    kept, dropped = grounding_filter(examples, CHUNKS, threshold=0.6)
    assert [e["meta"]["answer"] for e in kept] == ["100元", "100 USD"]
    assert dropped == {"answer_not_in_chunk": 2, "number_not_in_chunk": 1, "empty_answer": 1,
                       "question_contains_answer": 1, "chunk_not_found": 1}


def test_threshold_decides_partly_supported_answers() -> None:
    partly = [_ex("What is the fee?", "100 USD per month", "en:0000")]  # "per", "month" not in the chunk
    assert len(grounding_filter(partly, CHUNKS, threshold=0.5)[0]) == 1
    assert grounding_filter(partly, CHUNKS, threshold=0.6)[1] == {"answer_not_in_chunk": 1}


def test_seed_and_classification_examples_are_not_checked_against_chunks() -> None:
    seed = {"id": "s1", "messages": [{"role": "user", "content": "什么是LoRA？"},
                                     {"role": "assistant", "content": "低秩适配。"}],
            "meta": {"kind": "seed", "task": "qa", "chunk_ids": [], "question": "什么是LoRA？", "answer": "低秩适配。"}}
    label = make_example("卡片被盗刷怎么办", "fraud", kind="seed", generator="seed:csv", chunk=CHUNKS["zh:0000"],
                         task="classification", label="fraud")
    kept, dropped = grounding_filter([seed, label], CHUNKS, threshold=1.0)
    assert kept == [seed, label] and not dropped
