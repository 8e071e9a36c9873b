"""The rules generator: expected questions and answers for known sentences, in Chinese and English."""

from __future__ import annotations

import pytest

from verticalize.config import DataConfig
from verticalize.data.generators import Generator, make_generators
from verticalize.data.grounding import grounding_filter
from verticalize.data.rules import RulesGenerator, law_name, read_structure


def _chunk(text: str, *, cid: str = "doc:0000", title: str = "", lang: str = "zh", start: int = 0) -> dict:
    return {"id": cid, "doc_id": cid.split(":")[0], "source": "docs/x.md", "title": title, "text": text,
            "lang": lang, "start": start}


def _pairs(text: str, **kw) -> list[tuple[str, str, str]]:
    gen = RulesGenerator(max_per_chunk=50, cloze=kw.pop("cloze", False))
    examples = gen.generate([_chunk(text, **kw)])
    return [(e["meta"]["generator"], e["meta"]["question"], e["meta"]["answer"]) for e in examples]


ZH_CASES = [
    ("本办法所称信用卡，是指银行向个人发行的支付工具。",
     ("rules:definition", "什么是信用卡？", "信用卡是指银行向个人发行的支付工具。")),
    ("借款人在提款前应当提供收入证明和身份证件。",
     ("rules:obligation", "借款人在提款前应当做什么？", "借款人在提款前应当提供收入证明和身份证件。")),
    ("借款人不得将贷款用于股票投资。",
     ("rules:prohibition", "借款人不得做什么？", "借款人不得将贷款用于股票投资。")),
    ("如果逾期超过90天，银行应当停止计息。",
     ("rules:condition", "如果逾期超过90天，应当如何处理？", "银行应当停止计息。")),
    ("逾期还款的，银行有权收取罚息。",
     ("rules:condition", "逾期还款的，会怎样？", "银行有权收取罚息。")),
    ("信用卡年费为100元。", ("rules:amount", "信用卡年费为多少元？", "100元")),
    ("贷款年利率为4.35%。", ("rules:percent", "贷款年利率为多少？", "4.35%")),
    ("借款人应当在收到通知后15日内还款。", ("rules:deadline", "借款人应当在收到通知后多少日内还款？", "15日内")),
    ("本办法自2024年1月1日起施行。", ("rules:date", "本办法自何时起施行？", "2024年1月1日")),
    ("持卡人每年刷卡六次即可免年费。", ("rules:count", "持卡人每年刷卡多少次即可免年费？", "六次")),
    ("根据《中华人民共和国商业银行法》第三十七条的规定，贷款利率由双方约定。",
     ("rules:reference", "根据哪项规定，贷款利率由双方约定？", "《中华人民共和国商业银行法》第三十七条")),
    ("通过低秩分解，仅需更新0.1%-2%的参数。", ("rules:percent", "通过低秩分解，仅需更新多少的参数？", "0.1%-2%")),
    ("罕见病的发生率为8,000至80,000次分娩中出现一次。",
     ("rules:count", "罕见病的发生率为多少次分娩中出现一次？", "8,000至80,000次")),
    ("贷款期限为3年。", ("rules:deadline", "贷款期限为多少年？", "3年")),
]

# Sentences that look like a rule but are not one: no pair of that kind may come out.
ZH_NOT = [
    ("与此同时，她在双打赛场上也取得了优异的成绩。", "rules:condition"),   # a connective, not a condition
    ("全裸都是受到鼓励的，但并不强制参与者必须如此。", "rules:condition"),  # 是…的 emphasis
    ("直接微调用行业数据进行二次训练。", "rules:count"),                    # 二次 = secondary
    ("他于508年去世。", "rules:deadline"),                                  # a year, not a duration
    ("12月11日至15日进行前5轮。", "rules:deadline"),                        # day of month
]

EN_CASES = [
    ('"Annual fee" means the charge billed each year for keeping the card open.',
     ("rules:definition", 'What is meant by "Annual fee"?',
      '"Annual fee" means the charge billed each year for keeping the card open.')),
    ("The borrower must provide proof of income before drawdown.",
     ("rules:obligation", "What must the borrower do?", "The borrower must provide proof of income before drawdown.")),
    ("The cardholder must not share the PIN with anyone.",
     ("rules:prohibition", "What must the cardholder not do?", "The cardholder must not share the PIN with anyone.")),
    ("If the payment is late by more than 90 days, the bank stops charging interest.",
     ("rules:condition", "What happens if the payment is late by more than 90 days?",
      "The bank stops charging interest.")),
    ("The annual fee for the gold card is 100 USD.", ("rules:amount", "What is the annual fee for the gold card?",
                                                       "100 USD")),
    ("The replacement card costs $25.", ("rules:amount", "How much does the replacement card cost?", "$25")),
    ("Disputes must be raised within 60 days of the statement date.",
     ("rules:deadline", "Disputes must be raised within how many days of the statement date?", "within 60 days")),
    ("The policy takes effect on March 1, 2024.", ("rules:date", "The policy takes effect on what date?",
                                                   "on March 1, 2024")),
    ("Interest accrues at 5% per year.", ("rules:percent", "Interest accrues at what percentage per year?", "5%")),
    ("Under Article 12 of the Credit Act, lenders must disclose the APR.",
     ("rules:reference", "Which provision says that lenders must disclose the APR?", "Article 12 of the Credit Act")),
    ('A "Billing cycle" is defined as the period between two statement dates.',
     ("rules:definition", 'What is meant by "Billing cycle"?',
      'A "Billing cycle" is defined as the period between two statement dates.')),
    ("To dispute a charge, the cardholder must contact the bank within 60 days.",
     ("rules:obligation", "To dispute a charge, what must the cardholder do?",
      "To dispute a charge, the cardholder must contact the bank within 60 days.")),
    ("A fee of 8,000 USD applies.", ("rules:amount", "A fee of what amount applies?", "8,000 USD")),
]


@pytest.mark.parametrize("sentence,expected", ZH_CASES, ids=[c[1][0] + ":zh" for c in ZH_CASES])
def test_chinese_sentence_gives_expected_pair(sentence: str, expected: tuple[str, str, str]) -> None:
    assert expected in _pairs(sentence)


@pytest.mark.parametrize("sentence,rule", ZH_NOT)
def test_chinese_look_alikes_give_no_pair_of_that_kind(sentence: str, rule: str) -> None:
    assert rule not in [g for g, _, _ in _pairs(sentence)]


@pytest.mark.parametrize("sentence,expected", EN_CASES, ids=[c[1][0] + ":en" for c in EN_CASES])
def test_english_sentence_gives_expected_pair(sentence: str, expected: tuple[str, str, str]) -> None:
    assert expected in _pairs(sentence, lang="en")


def test_articles_use_the_law_from_the_heading_path() -> None:
    pairs = _pairs("第十二条 借款人不得将贷款用于股票投资。", title="《个人贷款管理办法》 > 第三章")
    assert ("rules:article", "《个人贷款管理办法》第十二条规定了什么？", "借款人不得将贷款用于股票投资。") in pairs
    en = _pairs("Article 5. The cardholder must not share the PIN.", title="Credit Card Terms", lang="en")
    assert ("rules:article", "What does Article 5 of the Credit Card Terms provide?",
            "The cardholder must not share the PIN.") in en
    assert law_name("信用卡业务管理办法 / 第二章") == "《信用卡业务管理办法》" and law_name("Introduction") == ""


def test_lists_are_asked_about_with_their_lead_and_items() -> None:
    zh = _pairs("贷款申请应当提供以下材料：\n（一）身份证件；\n（二）收入证明；\n（三）担保材料。")
    assert ("rules:list", "贷款申请应当提供哪些材料？", "（一）身份证件；\n（二）收入证明；\n（三）担保材料。") in zh
    # The lead sentence itself is not turned into an obligation ("…应当提供以下材料").
    assert not any(g == "rules:obligation" for g, _, _ in zh)
    en = _pairs("The application must include the following documents:\n1. An identity document\n\n"
                "2. Proof of income\n- not an item of the same run", lang="en")
    assert ("rules:list", "The application must include which documents?",
            "1. An identity document\n2. Proof of income") in en
    which = _pairs("The following information is required to open a dispute:\n1. Your name\n2. The amount", lang="en")
    assert ("rules:list", "Which information is required to open a dispute?", "1. Your name\n2. The amount") in which
    steps = _pairs("Steps to restart the service:\n- Stop the app\n- Start the app", lang="en")
    assert ("rules:list", "What are the steps to restart the service?", "- Stop the app\n- Start the app") in steps


def test_cloze_blanks_a_value_of_the_last_suitable_sentence() -> None:
    zh = _pairs("信用卡年费为100元。贷款年利率不得低于基准利率的90%。", cloze=True)
    assert ("rules:cloze", "填空：贷款年利率不得低于基准利率的____。", "90%") in zh
    en = _pairs("Interest accrues at 5% per year.", lang="en", cloze=True)
    assert ("rules:cloze", "Fill in the blank: Interest accrues at ____ per year.", "5%") in en


def test_cap_keeps_variety_and_order_is_deterministic() -> None:
    text = ("本办法所称信用卡，是指银行发行的支付工具。借款人应当按时还款。借款人不得转借贷款。"
            "如果逾期超过90天，银行应当停止计息。信用卡年费为100元。")
    gen = RulesGenerator(max_per_chunk=3, cloze=True)
    first = list(gen.generate([_chunk(text)]))
    # Round-robin over families: a definition, an obligation, a condition, not three obligations.
    assert [e["meta"]["generator"] for e in first] == ["rules:definition", "rules:obligation", "rules:condition"]
    again = list(RulesGenerator(max_per_chunk=3, cloze=True).generate([_chunk(text)]))
    assert again == first and len({e["id"] for e in first}) == 3
    assert gen.report()["counts"]["rule:definition"] == 1
    # Ids depend on chunk, rule and question only: the same sentence in another chunk gets another id.
    other = list(RulesGenerator(max_per_chunk=3, cloze=True).generate([_chunk(text, cid="other:0001")]))
    assert {e["id"] for e in other}.isdisjoint({e["id"] for e in first})


def test_examples_follow_the_dataset_contract() -> None:
    [example] = RulesGenerator(max_per_chunk=1).generate([_chunk("信用卡年费为100元。")])
    assert example["messages"] == [{"role": "user", "content": "信用卡年费为多少元？"},
                                   {"role": "assistant", "content": "100元"}]
    meta = example["meta"]
    assert meta["kind"] == "synthetic" and meta["task"] == "qa" and meta["parent_id"] is None
    assert (meta["doc_id"], meta["source"], meta["chunk_ids"]) == ("doc", "docs/x.md", ["doc:0000"])


def test_cut_fragments_at_chunk_edges_are_not_used() -> None:
    sentences, _, _ = read_structure("of the card is 100 USD. The fee is 5 USD. The deadline is 30 da",
                                     first_may_be_cut=True)
    assert sentences == ["The fee is 5 USD."]
    sentences, _, _ = read_structure("借款人应当按时还款。信用卡年费为10", first_may_be_cut=False)
    assert sentences == ["借款人应当按时还款。"]


def test_mixed_language_chunk_uses_rules_per_sentence() -> None:
    pairs = _pairs("信用卡年费为100元。The borrower must repay on time.", lang="mixed")
    assert ("rules:amount", "信用卡年费为多少元？", "100元") in pairs
    assert ("rules:obligation", "What must the borrower do?", "The borrower must repay on time.") in pairs


def test_every_rule_answer_passes_the_grounding_filter() -> None:
    chunks = [_chunk(" ".join(s for s, _ in ZH_CASES), cid="zh:0000"),
              _chunk(" ".join(s for s, _ in EN_CASES), cid="en:0000", lang="en"),
              _chunk("第十二条 借款人不得将贷款用于股票投资。\n贷款申请应当提供以下材料：\n1. 身份证件\n2. 收入证明",
                     cid="zl:0000")]
    examples = list(RulesGenerator(max_per_chunk=100).generate(chunks))
    assert len(examples) >= len(ZH_CASES) + len(EN_CASES)
    kept, dropped = grounding_filter(examples, {c["id"]: c for c in chunks}, threshold=1.0)
    assert len(kept) == len(examples) and not dropped


def test_no_pairs_for_text_without_rules_and_counted() -> None:
    gen = RulesGenerator(max_per_chunk=4)
    assert list(gen.generate([_chunk("今天天气很好。"), _chunk("")])) == []
    assert gen.report()["counts"] == {"chunks": 2, "chunks_without_pairs": 2}


def test_make_generators_follows_the_config() -> None:
    [rules] = make_generators(DataConfig(generator="rules", max_per_chunk=7, cloze=False))
    assert isinstance(rules, Generator) and rules.name == "rules"
    assert (rules.max_per_chunk, rules.cloze) == (7, False)
