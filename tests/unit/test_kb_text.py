"""The retrieval tokenizer: jieba for Han runs, lowercase words elsewhere, NFKC, stopwords."""

from verticalize.kb.text import tokenize


def test_mixed_text_is_split_by_script():
    tokens = tokenize("调用Payment API接口，超时30秒")
    assert tokens[:1] == ["调用"]
    assert "payment" in tokens and "api" in tokens and "接口" in tokens and "30" in tokens
    assert not any(t.strip("，。 ") == "" for t in tokens)  # punctuation never becomes a token


def test_search_mode_adds_sub_words_of_compounds():
    assert tokenize("中华人民共和国", mode="precise") == ["中华人民共和国"]
    search = tokenize("中华人民共和国")
    assert {"中华", "人民", "共和国", "中华人民共和国"} <= set(search)


def test_full_width_and_case_are_normalised():
    assert tokenize("ＡＰＩ　Ｖ２") == tokenize("api v2") == ["api", "v2"]


def test_decimals_stay_whole_and_stopwords_go():
    assert tokenize("The rate is 3.5% per year") == ["rate", "3.5", "per", "year"]
    assert tokenize("什么是年费？") == ["年费"]
    assert tokenize("什么是年费？", keep_stopwords=True) == ["什么", "是", "年费"]


def test_parallel_analysis_equals_sequential():
    from verticalize.kb.text import PARALLEL_MIN_TEXTS, analyze, analyze_many

    texts = [f"第{i}条 贷款逾期超过{i % 90}天，银行应当停止计息 (loan {i} overdue)" for i in range(PARALLEL_MIN_TEXTS)]
    assert analyze_many(texts, workers=2) == [analyze(t) for t in texts]
