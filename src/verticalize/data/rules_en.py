"""English rules: definitions, obligations/prohibitions, conditions, values (amounts, percentages, dates,
deadlines, counts), article references and list questions. Answers are spans of the sentence or restatements
built only from its words.
"""

from __future__ import annotations

import re

from verticalize.data.rules_base import Candidate, ValueSpan, find_spans, strip_end, without_article

_MONTH = (r"(?:January|February|March|April|May|June|July|August|September|October|November|December|"
          r"Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)\.?")
_NUM = r"(?<![\d.,])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"  # 1,000.50 but not the "000" of 8,000
_UNIT = r"(?:business |calendar |working )?(?:days?|weeks?|months?|years?|hours?|minutes?)"
_ARTICLE = r"(?:Article|Section|Clause|Rule)\s+\d+[A-Za-z]?(?:\.\d+)*(?:\(\w+\))*"
_LEADING_WORDS = {"the", "a", "an", "each", "every", "all", "any", "no", "this", "these", "such", "its", "their"}

_DEFINITION = re.compile(r"^(?:(?:A|An|The)\s+(?=[\"“']))?(?P<term>[\"“']?[A-Za-z][\w\s'’/-]{0,50}?[\"”']?)\s+"
                         r"(?:means|shall mean|is defined as|refers to)\s+(?P<body>.{3,})$")
_OBLIGATION = re.compile(
    r"^(?:(?P<intro>[^,]{3,60}),\s+)?(?P<subj>[A-Za-z][\w'’-]*(?:\s+[\w'’-]+){0,7}?)\s+"
    r"(?P<modal>must not|shall not|may not|must|shall|is required to|are required to|is prohibited from|"
    r"are prohibited from)\s+(?P<pred>.{3,})$")
_CONDITION = re.compile(r"^(?P<kw>If|When|Where|In case|In the event that|Once)\s+(?P<cond>[^,]{3,120}),\s*"
                        r"(?:then\s+)?(?P<cons>.{3,})$")
_COPULA = re.compile(r"^(?P<subj>.{3,80}?)\s+(?P<verb>is|are|was|were|will be|shall be|costs?|amounts? to|equals?)\s+"
                     r"(?:(?:set at|fixed at|capped at|limited to|up to|at least|at most|only|about|approximately|"
                     r"currently)\s+)*$")
_CITATION = re.compile(rf"\b(?:under|according to|pursuant to|in accordance with)\s+"
                       rf"(?P<ref>{_ARTICLE}(?:\s+of\s+(?:the\s+)?[A-Z][\w'’-]*(?:\s+[A-Z][\w'’-]*){{0,6}})?),\s*"
                       r"(?P<rest>.{4,})$", re.IGNORECASE)
ARTICLE_HEADING = re.compile(rf"^(?P<art>{_ARTICLE})\s*[.:\-–—]?\s+(?P<body>\S.*)$")

VALUE_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("date", re.compile(rf"(?P<v>(?:(?:before|after|by|on|until|no later than)\s+)?"
                        rf"(?:{_MONTH}\s+\d{{1,2}},?\s+\d{{4}}|\d{{1,2}}\s+{_MONTH}\s+\d{{4}}"
                        r"|\d{4}-\d{2}-\d{2}))")),
    ("amount", re.compile(rf"(?P<v>(?:USD|US\$|\$|EUR|€|£|RMB|CNY)\s?{_NUM}(?:\s?(?:million|billion|thousand))?"
                          rf"|{_NUM}\s?(?:million |billion |thousand )?(?:USD|dollars|EUR|euros|yuan|RMB|CNY)\b)")),
    ("percent", re.compile(rf"(?P<v>{_NUM}\s?(?:%|percent\b))")),
    ("deadline", re.compile(rf"(?P<v>(?:(?:within|no later than|at least|after|for|in)\s+)?\b{_NUM}\s+{_UNIT}\b)")),
    ("count", re.compile(rf"(?P<v>\b{_NUM}\s+times\b)")),
]
_ASK = {"amount": "what amount", "percent": "what percentage", "date": "what date", "count": "how many times"}


def value_spans(sentence: str) -> list[ValueSpan]:
    return find_spans(VALUE_PATTERNS, sentence)


def _subject(text: str) -> str:
    """A sentence-initial subject as it reads mid-question: "The borrower" → "the borrower"."""
    first, _, rest = text.strip().partition(" ")
    if first.lower() in _LEADING_WORDS:
        first = first.lower()
    return f"{first} {rest}".strip()


def _ask_deadline(span: ValueSpan) -> str:
    m = re.match(rf"^(?P<pre>(?:within|no later than|at least|after|for|in)\s+)?{_NUM}\s+(?P<unit>.+)$", span.text)
    if not m:
        return "how long"
    unit = m.group("unit")
    plural = unit if unit.endswith("s") else unit + "s"
    return f"{m.group('pre') or ''}how many {plural}"


def value_candidates(sentence: str, limit: int = 2) -> list[Candidate]:
    body = _without_article(strip_end(sentence))
    out = []
    for span in value_spans(body)[:limit]:
        before, after = body[: span.start], body[span.end:]
        copula = _COPULA.match(before)
        if copula and span.kind in ("amount", "percent") and not after.lstrip().startswith(("of", "per")):
            rest = re.split(r"[,;]", after, maxsplit=1)[0].rstrip()
            verb = copula.group("verb")
            if verb.startswith("cost"):
                question = f"How much does {_subject(copula.group('subj'))} cost{rest}?"
            else:
                be = "are" if verb in ("are", "were") else "is"
                question = f"What {be} {_subject(copula.group('subj'))}{rest}?"
        else:
            ask = _ask_deadline(span) if span.kind == "deadline" else _ASK[span.kind]
            if span.kind == "date":
                ask = re.match(r"^((?:before|after|by|on|until|no later than)\s+)?", span.text).group(0) + ask
            question = _cap(f"{before}{ask}{after}".strip()) + "?"
        out.append(Candidate(span.kind, question, span.text.strip()))
    return out


def definition_candidates(sentence: str) -> list[Candidate]:
    m = _DEFINITION.match(_without_article(strip_end(sentence)))
    if not m:
        return []
    term = _subject(m.group("term"))
    return [Candidate("definition", f"What is meant by {term}?", _cap(strip_end(m.group(0))) + ".")]


def obligation_candidates(sentence: str) -> list[Candidate]:
    body = _without_article(strip_end(sentence))
    m = _OBLIGATION.match(body)
    if not m or m.group("subj").split()[0].lower() in ("if", "when", "where", "once", "unless"):
        return []
    subj, modal, pred = _subject(m.group("subj")), m.group("modal"), m.group("pred")
    negative = modal.endswith("not") or "prohibited" in modal
    if pred.startswith("be "):
        question = f"what is required of {subj}"
    elif modal in ("must not", "shall not", "may not"):
        question = f"what {modal.split()[0]} {subj} not do"
    elif modal in ("must", "shall"):
        question = f"what {modal} {subj} do"
    elif "required" in modal:
        question = f"what {modal.split()[0]} {subj} required to do"
    else:
        question = f"what {modal.split()[0]} {subj} prohibited from doing"
    # An introductory clause ("To dispute a charge, the cardholder must …") stays in the question.
    question = f"{_cap(m.group('intro'))}, {question}" if m.group("intro") else _cap(question)
    return [Candidate("prohibition" if negative else "obligation", question + "?", _cap(body) + ".")]


def condition_candidates(sentence: str) -> list[Candidate]:
    m = _CONDITION.match(_without_article(strip_end(sentence)))
    if not m:
        return []
    kw = "when" if m.group("kw") in ("When", "Once") else "if"
    return [Candidate("condition", f"What happens {kw} {m.group('cond')}?", _cap(m.group("cons")) + ".")]


def citation_candidates(sentence: str) -> list[Candidate]:
    m = _CITATION.search(strip_end(sentence))
    if not m:
        return []
    rest = m.group("rest").strip()
    return [Candidate("reference", f"Which provision says that {rest[0].lower() + rest[1:]}?", m.group("ref"))]


def article_candidates(article: str, body: str, law: str) -> list[Candidate]:
    where = f" of {law}" if law else ""
    return [Candidate("article", f"What does {article}{where} provide?", body)]


def list_question(lead: str) -> str:
    lead = strip_end(lead)
    m = re.match(r"^(?P<subj>.+?)\s+(?:is|are)\s+as follows$", lead, re.IGNORECASE)
    if m:
        return f"What are {_subject(m.group('subj'))}?"
    if re.search(r"\bthe following\b", lead, re.IGNORECASE):
        return _cap(re.sub(r"\bthe following\b", "which", lead, count=1, flags=re.IGNORECASE)) + "?"
    subject = _subject(lead)
    return f"What are {subject if subject.split()[0] in _LEADING_WORDS else 'the ' + subject[0].lower() + subject[1:]}?"


def cloze_question(masked: str) -> str:
    return f"Fill in the blank: {masked}"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def _without_article(body: str) -> str:
    return without_article(body, ARTICLE_HEADING)
