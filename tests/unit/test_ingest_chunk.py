"""Structure-aware chunking and cleaning: articles, headings, sentences, overlap, page furniture, PDF lines."""

from __future__ import annotations

from verticalize.ingest import chunk_text
from verticalize.ingest.clean import clean_pages, strip_boilerplate, unwrap_lines

LAW = """# 商业银行贷款管理办法

## 第一章 总则

第一条 为了规范商业银行的贷款业务，保护借款人的合法权益，制定本办法。
第二条 借款人应当按时还款。借款人不得将贷款用于股票投资。
第三条 删除。

## 第二章 贷款程序

第四条 """ + "贷款人应当对借款人的信用状况进行审查，审查内容包括收入、负债和担保情况。" * 6 + """
第五条 本办法自发布之日起施行。
"""


def _check_slices(text, chunks):
    for c in chunks:
        assert text[c.start:c.start + len(c.text)] == c.text


def test_articles_start_chunks_and_titles_follow_headings():
    chunks = chunk_text(LAW, chunk_chars=120, overlap=40, min_chars=20)
    _check_slices(LAW, chunks)
    # 第三条 is below min_chars and joins the chunk before it (same chapter, room left).
    starts = [c.text.lstrip("# ").split()[0] for c in chunks]
    assert starts[0] == "商业银行贷款管理办法"              # the heading lines lead the first article's chunk
    assert "第一条" in chunks[0].text and "第二条" not in chunks[0].text
    assert chunks[1].text.startswith("第二条") and "第三条 删除。" in chunks[1].text
    assert chunks[2].text.startswith("## 第二章 贷款程序\n\n第四条")
    assert chunks[-1].text == "第五条 本办法自发布之日起施行。"   # too small, but the chunk before is full
    assert chunks[0].title == "商业银行贷款管理办法 > 第一章 总则"
    assert chunks[2].title == chunks[-1].title == "商业银行贷款管理办法 > 第二章 贷款程序"


def test_long_article_split_at_sentences_with_overlap():
    chunks = chunk_text(LAW, chunk_chars=120, overlap=40, min_chars=20)
    article4 = [c for c in chunks if "第四条" in c.text or c.text.startswith("贷款人应当")]
    assert len(article4) >= 3
    for c in article4:
        assert len(c.text) <= 120 + 40
        assert c.text.endswith("。")                      # breaks fall on sentence ends
    for prev, nxt in zip(article4, article4[1:]):
        assert nxt.start < prev.start + len(prev.text)     # overlap with the previous chunk
    assert not any(c.text.startswith("贷款人应当") and "第五条" in c.text for c in chunks)


def test_no_overlap_when_zero_and_sizes_respected():
    text = " ".join(f"Sentence number {i} says something about loans." for i in range(60))
    chunks = chunk_text(text, chunk_chars=200, overlap=0, min_chars=20)
    _check_slices(text, chunks)
    assert all(len(c.text) <= 200 for c in chunks)
    assert all(a.start + len(a.text) <= b.start for a, b in zip(chunks, chunks[1:]))
    assert "".join(c.text for c in chunks).replace(" ", "") == text.replace(" ", "")


def test_over_long_sentence_is_cut_at_commas():
    text = "，".join(["借款人应当提供真实材料"] * 40) + "。"
    chunks = chunk_text(text, chunk_chars=100, overlap=0, min_chars=10)
    _check_slices(text, chunks)
    assert len(chunks) > 3 and all(len(c.text) <= 100 for c in chunks)
    assert all(c.text.endswith(("，", "。")) for c in chunks)


def test_markdown_heading_path_and_chinese_sections():
    text = "# Guide\n\n## Setup\n\nInstall the tool.\n\n### Linux\n\nUse apt to install it on Linux systems.\n\n" \
           "## Usage\n\nRun it with a config file and watch the output carefully."
    chunks = chunk_text(text, chunk_chars=600, overlap=0, min_chars=20)
    titles = [c.title for c in chunks]
    assert titles == ["Guide > Setup", "Guide > Setup > Linux", "Guide > Usage"]
    assert chunks[0].text == "# Guide\n\n## Setup\n\nInstall the tool."
    zh = "第一编 总则\n第一章 基本规定\n第一节 一般规定\n第一条 本法所称贷款，是指贷款人向借款人提供的资金。"
    assert chunk_text(zh)[0].title == "第一编 总则 > 第一章 基本规定 > 第一节 一般规定"
    assert chunk_text("第三章规定的情形除外，借款人可以申请展期，贷款人应当在十日内答复。")[0].title == ""


def test_numbered_headings_and_english_articles():
    text = ("报告标题\n一、技术必要性解析\n1.1 行业实践数据支撑\n根据2024年的研究报告，78%的垂直场景需要微调。\n"
            "1.2 成本\n成本很高，需要优化资源配置以降低总体拥有成本。\n二、实施路径\n2.1.2 参数适配层\n"
            "采用LoRA技术实现参数高效更新，其核心原理为低秩分解。\n"
            "Article 5 The borrower shall repay the loan on time and in full.\n"
            "Article 6 The lender may charge penalty interest on overdue amounts.\n")
    chunks = chunk_text(text, chunk_chars=600, overlap=0, min_chars=20)
    assert chunks[0].text.startswith("报告标题\n一、技术必要性解析")        # a tiny preamble joins what follows
    assert [c.title for c in chunks[1:]] == ["一、技术必要性解析 > 1.2 成本"] + ["二、实施路径 > 2.1.2 参数适配层"] * 3
    assert [c.text[:9] for c in chunks[3:]] == ["Article 5", "Article 6"]
    # a numbered line that is a sentence is not a heading
    assert chunk_text("1.1 本条所称贷款是指借款人向贷款人借入的资金。")[0].title == ""
    trailing = chunk_text("# Notes\n\nThe borrower repays on time every month.\n\n## Appendix\n")
    assert [c.text for c in trailing] == ["# Notes\n\nThe borrower repays on time every month."]  # empty heading dropped


def test_boilerplate_removed_from_pages():
    bodies = ["借款人应当按时还款。", "贷款人应当审查信用。", "担保人承担连带责任。", "逾期收取罚息。", "本办法自发布之日起施行。"]
    pages = [f"XX银行内部资料 严禁外传\n第{i}条 {body}\n第 {i} 页 共 5 页" for i, body in enumerate(bodies, 1)]
    cleaned, removed = strip_boilerplate(pages)
    assert removed == 10
    assert all("严禁外传" not in p and "页" not in p for p in cleaned)
    assert cleaned[2] == "第3条 担保人承担连带责任。"
    text, n = clean_pages(pages, paged=True, strip_furniture=True)
    assert n == 10 and text == "\n\n".join(f"第{i}条 {body}" for i, body in enumerate(bodies, 1))
    assert strip_boilerplate(pages[:2])[0][0].startswith("XX银行")   # two pages are no evidence of repetition


def test_unwrap_pdf_lines():
    wrapped = ("第一条 为了规范商业银行的贷款业务，保护借款人的\n合法权益，制定本办法。\n第二条 借款人应当按时还款。\n"
               "The borrower shall repay the loan within the agreed term and the lender\nmay charge inter-\nest.")
    assert unwrap_lines(wrapped) == ("第一条 为了规范商业银行的贷款业务，保护借款人的合法权益，制定本办法。\n"
                                     "第二条 借款人应当按时还款。\n"
                                     "The borrower shall repay the loan within the agreed term and the lender may "
                                     "charge interest.")
