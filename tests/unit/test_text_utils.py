"""Shared text utilities: normalisation, language, match tokens, exact and near-duplicate keys."""

from __future__ import annotations

import pytest

from verticalize.text import NearDuplicateIndex, detect_lang, exact_key, is_cjk, normalize, tokens_for_match


def test_normalize_fullwidth_ascii_but_keeps_chinese_punctuation():
    assert normalize("ＬｏＲＡ　ｒ＝８，学习率１０％。") == "LoRA r=8，学习率10%。"
    assert normalize("问题？回答！条件；") == "问题？回答！条件；"


def test_normalize_whitespace_invisible_and_line_endings():
    text = "a\u200bb  \t c \r\n\r\n\r\n\r\n  d\u00a0e\ufeff\x07\rf"
    assert normalize(text) == "ab c\n\nd e\nf"


def test_is_cjk():
    assert is_cjk("中") and is_cjk("の") and is_cjk("한")
    assert not is_cjk("a") and not is_cjk("，") and not is_cjk("1")


@pytest.mark.parametrize("text,lang", [
    ("借款人应当按时还款，逾期的按合同约定处理。", "zh"),
    ("LoRA 是一种参数高效的微调方法，只训练低秩矩阵。", "zh"),
    ("The borrower shall repay the loan on time.", "en"),
    ("The 借款人 shall 按时还款 before the deadline.", "mixed"),
    ("12345 67", "en"),
])
def test_detect_lang(text, lang):
    assert detect_lang(text) == lang


def test_tokens_for_match_cjk_chars_and_lowercase_words():
    assert tokens_for_match("LoRA 的秩 r=8，学习率3.5！") == ["lora", "的", "秩", "r", "8", "学", "习", "率", "3.5"]
    assert tokens_for_match("Hello, WORLD.") == ["hello", "world"]
    assert tokens_for_match("") == []


def test_tokens_for_match_splits_letters_from_digits_and_keeps_decimals_whole():
    assert tokens_for_match("GDP4.8亿") == ["gdp", "4.8", "亿"]
    assert tokens_for_match("GDP 4.8 亿") == tokens_for_match("GDP4.8亿")  # glued or spaced: the same tokens
    assert tokens_for_match("gpt4o v1.2.3 x86_64") == ["gpt", "4", "o", "v", "1.2.3", "x", "86", "64"]
    assert tokens_for_match("１，０００元，Ｑ３。") == ["1", "000", "元", "q", "3"]  # full width; no decimal point
    assert exact_key("GDP4.8亿") == exact_key("gdp 4.8 亿")


def test_exact_key_ignores_case_space_punctuation_and_width():
    assert exact_key("Hello, World!") == exact_key("hello world")
    assert exact_key("第一条　借款人应当还款。") == exact_key("第一条 借款人应当还款")
    assert exact_key("借款人应当还款") != exact_key("借款人不得还款")


def test_near_duplicate_index_chinese_and_english():
    index = NearDuplicateIndex(threshold=0.8)
    zh = "第十二条 借款人应当在合同约定的期限内按时足额偿还贷款本金和利息，逾期未还的，贷款人有权按照合同约定收取罚息。"
    en = ("The borrower shall repay the principal and interest in full within the term agreed in the contract; "
          "if it is overdue the lender may charge penalty interest as agreed.")
    assert index.add("zh", zh) is None
    assert index.add("en", en) is None
    assert index.add("zh2", zh.replace("罚息", "违约金")) == "zh"          # one word changed
    assert index.add("en2", en.replace("penalty", "default")) == "en"
    assert index.add("other", "完全不同的一段话，讲的是另外一件事情，和上面的贷款合同无关。") is None
    assert len(index) == 3 and "zh2" not in index
    assert index.query(zh + "。") == ["zh"]
    with pytest.raises(ValueError, match="already"):
        index.add("zh", "x")


def test_near_duplicate_index_insert_stores_near_duplicates_and_accepts_a_minhash():
    index = NearDuplicateIndex(threshold=0.8)
    text = "借款人应当在合同约定的期限内按时足额偿还贷款本金和利息，逾期未还的，贷款人有权收取罚息。"
    near = text.replace("罚息", "违约金")
    assert index.add("a", text) is None
    index.insert("b", near)                          # add() would refuse it: insert() stores it anyway
    assert len(index) == 2 and "b" in index
    assert index.query(near) == ["b", "a"]           # most similar first
    mh = index.minhash(text)                         # hash once, query and store with it
    assert index.query(mh) == index.query(text) == ["a", "b"]
    index.insert("c", mh)
    assert index.query(text)[:2] == ["a", "c"] and len(index) == 3
    assert index.add("d", mh) == "a"                 # add() still refuses a near duplicate
    with pytest.raises(ValueError, match="already"):
        index.insert("a", "x")
