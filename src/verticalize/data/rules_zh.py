"""Chinese rules: definitions, obligations/prohibitions, conditions, values (amounts, dates, deadlines, counts),
article references and list questions. Each function takes one sentence (or list lead) and proposes pairs whose
answer is a span of the sentence or a faithful restatement built only from its words.
"""

from __future__ import annotations

import re

from verticalize.data.rules_base import CN_NUM, Candidate, ValueSpan, find_spans, strip_end, without_article

# A number never starts inside another one ("8,000": not "000"; "4.35": not "35").
_N = rf"(?:(?<![\d.,])\d+(?:,\d{{3}})*(?:\.\d+)?|[{CN_NUM}]+)"
_ARTICLE = rf"第[{CN_NUM}\d]+条"

_DEFINITION = re.compile(
    r"^(?:本(?:办法|规定|条例|细则|法|规则|制度|指引|准则|协议|合同)(?:中)?所称的?)?"
    r"(?P<term>[^，。；：、（）\s,]{1,24}?)[，,]?(?:是指|系指|指的是)(?P<body>.{2,})$")
_MODAL = re.compile(r"不应当|不得|应当|必须|严禁|禁止")
_MODAL_QUESTION = {"应当": "{p}应当做什么？", "必须": "{p}必须做什么？", "不得": "{p}不得做什么？",
                   "不应当": "{p}不应当做什么？", "严禁": "{p}严禁做什么？", "禁止": "{p}禁止做什么？"}
_IF = re.compile(r"^(?P<kw>如果|若|倘若|假如|一旦|凡)(?P<cond>[^，,。]{2,40})[，,](?:则|那么)?(?P<cons>.{2,})$")
_LEGAL_IF = re.compile(r"^(?P<cond>[^，,。]{2,40}的)[，,](?P<cons>.{2,})$")
_WHEN = re.compile(r"^(?P<cond>(?:当|每当)[^，,。]{2,40}(?:时|后|以后|之后)|在[^，,。]{2,40}(?:时|情况下)"
                   r"|[^，,。]{2,40}情况下)[，,](?P<cons>.{2,})$")
# "…的，…" is a condition in legal prose ("逾期还款的，银行有权…") when a legal consequence follows; "是…的" is
# emphasis, not a condition.
_LEGAL_CONSEQUENCE = re.compile(r"应当|不得|有权|必须|予以|责令|处以|罚款|视为|承担|依法")
_CITATION = re.compile(
    rf"(?:依据|根据|依照|按照)(?P<ref>《[^》]{{1,40}}》(?:{_ARTICLE})?(?:第[{CN_NUM}\d]+款)?)(?:的(?:有关)?规定)?[，,]"
    r"(?P<rest>.{4,})$")
ARTICLE_HEADING = re.compile(rf"^(?P<art>{_ARTICLE})[\s:：]*(?P<body>\S.*)$")

# The lower end of a range ("0.1%-2%", "3-5倍", "8,000至80,000次"), kept inside the value span.
_RANGE = (r"(?:(?:(?<![\d.,])\d+(?:,\d{{3}})*(?:\.\d+)?|[{n}]+)\s*(?:%|％|倍|元|万元|天|日|个月|年)?"
          r"\s*[-~～—–至到]\s*)?").format(n=CN_NUM)
_DURATION = (r"(?:{N}\s*(?:个)?(?:工作日|自然日|天|周|个月|小时|分钟)|(?<!\d)(?:\d{{1,2}}|[{n}]+)\s*年(?![\d{n}]*月)"
             r"|{N}\s*日(?=内|以内|之内))(?:内|以内|之内)?").format(N=_N, n=CN_NUM)
VALUE_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("date", re.compile(r"(?P<v>\d{4}年\d{1,2}月(?:\d{1,2}日)?|\d{4}-\d{1,2}-\d{1,2}|(?<![\d年])\d{1,2}月\d{1,2}日)")),
    ("amount", re.compile(rf"(?P<v>(?:人民币|美元)?{_RANGE}\d+(?:,\d{{3}})*(?:\.\d+)?\s*(?:万元|亿元|元|美元|港元|欧元|USD|RMB|CNY))")),
    ("percent", re.compile(rf"(?P<v>{_RANGE}\d+(?:\.\d+)?\s*[%％]|百分之[零一二三四五六七八九十百点]+)")),
    ("deadline", re.compile(rf"(?P<v>(?<![\d第]){_RANGE}{_DURATION})")),
    # Not ordinals (第三次) nor 一次/二次, which mostly mean "once"/"secondary" rather than a count.
    ("count", re.compile(rf"(?P<v>(?<![第{CN_NUM}\d])(?!一次|二次){_RANGE}{_N}\s*(?:次|项|倍|笔|张|户)(?!性))")),
]


def value_spans(sentence: str) -> list[ValueSpan]:
    return find_spans(VALUE_PATTERNS, sentence)


def _ask_value(span: ValueSpan) -> str:
    """The interrogative that replaces a value in the question: 100元 → 多少元, 2024年1月1日 → 何时."""
    if span.kind == "date":
        return "何时"
    if span.kind == "percent":
        return "多少"
    unit = re.sub(rf"^(?:人民币|美元)?{_RANGE}(?:\d+(?:,\d{{3}})*(?:\.\d+)?|[{CN_NUM}]+)\s*", "", span.text)
    return "多少" + unit


def _focus(body: str, start: int, end: int, limit: int = 60) -> tuple[str, int, int]:
    """A long sentence cut to the clause holding [start, end) (plus the first clause, which names the subject)."""
    if len(body) <= limit:
        return body, start, end
    bounds = [0] + [m.end() for m in re.finditer(r"[，,；;]", body)] + [len(body) + 1]
    i = max(k for k in range(len(bounds) - 1) if bounds[k] <= start)
    lo, hi = bounds[i], bounds[i + 1] - 1
    clause = body[lo:hi].rstrip("，,；;")
    if lo > 0 and bounds[1] - 1 + len(clause) <= limit:
        head = body[: bounds[1] - 1].rstrip("，,；;")
        return head + "，" + clause, start - lo + len(head) + 1, end - lo + len(head) + 1
    return clause, start - lo, end - lo


def value_candidates(sentence: str, limit: int = 2) -> list[Candidate]:
    body = _without_article(strip_end(sentence))
    out = []
    for span in value_spans(body)[:limit]:
        text, s, e = _focus(body, span.start, span.end)
        question = text[:s] + _ask_value(span) + text[e:]
        out.append(Candidate(span.kind, question.strip("，, ") + "？", span.text.strip()))
    return out


def definition_candidates(sentence: str) -> list[Candidate]:
    body = _without_article(strip_end(sentence))
    m = _DEFINITION.match(body)
    if not m or _MODAL.search(m.group("term")):
        return []
    term = m.group("term").strip("“”\"'「」")
    return [Candidate("definition", f"什么是{term}？", f"{term}是指{m.group('body')}。")]


def obligation_candidates(sentence: str) -> list[Candidate]:
    body = _without_article(strip_end(sentence))
    m = _MODAL.search(body)
    if not m:
        return []
    prefix = body[: m.start()].strip("，, ")
    predicate = body[m.end():]
    # Needs a subject; "应当为100元" is a value statement, which the value rule asks about.
    if not prefix or len(prefix) > 40 or len(predicate) < 2 or predicate[0] in "是为":
        return []
    kind = "prohibition" if m.group() in ("不得", "不应当", "严禁", "禁止") else "obligation"
    return [Candidate(kind, _MODAL_QUESTION[m.group()].format(p=prefix), body + "。")]


def condition_candidates(sentence: str) -> list[Candidate]:
    body = _without_article(strip_end(sentence))
    for pattern in (_IF, _LEGAL_IF, _WHEN):
        m = pattern.match(body)
        if m and (pattern is not _LEGAL_IF or (_LEGAL_CONSEQUENCE.search(m.group("cons"))
                                                and "是" not in m.group("cond"))):
            cond = (m.groupdict().get("kw") or "") + m.group("cond")
            consequence = m.group("cons").strip("，, ")
            ask = "应当如何处理" if _MODAL.search(consequence) else "会怎样"
            return [Candidate("condition", f"{cond}，{ask}？", consequence + "。")]
    return []


def citation_candidates(sentence: str) -> list[Candidate]:
    m = _CITATION.search(strip_end(sentence))
    if not m:
        return []
    return [Candidate("reference", f"根据哪项规定，{m.group('rest').strip('，, ')}？", m.group("ref"))]


def article_candidates(article: str, body: str, law: str) -> list[Candidate]:
    return [Candidate("article", f"{law}{article}规定了什么？", body)]


def list_question(lead: str) -> str:
    lead = strip_end(lead)
    if re.search(r"以下|下列", lead):
        return re.sub(r"以下|下列", "哪些", lead, count=1) + "？"
    if lead.endswith("如下"):
        return lead[:-2].rstrip("，, ") + "有哪些？"
    return f"{lead}包括哪些？"


def cloze_question(masked: str) -> str:
    return f"填空：{masked}"


def _without_article(body: str) -> str:
    return without_article(body, ARTICLE_HEADING)
