"""Shared pieces of the rule engine: the candidate pair, value spans and the list/article shapes of a chunk."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NamedTuple


class Candidate(NamedTuple):
    """One question/answer pair proposed by a rule (``rule`` becomes ``rules:<rule>`` in meta.generator)."""

    rule: str
    question: str
    answer: str


@dataclass(frozen=True)
class ValueSpan:
    """A number-like span in a sentence: kind is amount, percent, date, deadline or count."""

    kind: str
    start: int
    end: int
    text: str


@dataclass
class ListBlock:
    """A lead line ("…提供以下材料：", "Steps:") followed by two or more marked items (kept with their markers)."""

    lead: str
    items: list[str] = field(default_factory=list)


# Item markers: 1. 1) 1、 (1) （一） 一、 ① a) - * • ·
LIST_MARKER = re.compile(
    r"^\s*(?:\d{1,2}(?:[.、)）](?!\d))|[（(](?:\d{1,2}|[一二三四五六七八九十]{1,3})[)）]|[一二三四五六七八九十]{1,3}、"
    r"|[a-zA-Z][.)](?=\s)|[-*•·●▪](?=\s)|[\u2460-\u2473])\s*")

_FAMILIES = (("number", re.compile(r"^\s*\d")), ("paren", re.compile(r"^\s*[（(]")),
             ("chinese", re.compile(r"^\s*[一二三四五六七八九十]")), ("letter", re.compile(r"^\s*[a-zA-Z]")),
             ("circled", re.compile(r"^\s*[\u2460-\u2473]")))


def marker_family(line: str) -> str | None:
    """The style of a list line's marker (number, paren, chinese, letter, circled, bullet) or None if unmarked.

    One list is one run of the same style, so "1. 2." items followed by a "- note" line are two lists.
    """
    if not LIST_MARKER.match(line):
        return None
    return next((name for name, pattern in _FAMILIES if pattern.match(line)), "bullet")


# Terminal punctuation of a complete sentence (Chinese and Western).
SENTENCE_END = "。！？!?.；;"

CN_NUM = "零〇一二两三四五六七八九十百千万"


def strip_end(text: str) -> str:
    """Sentence text without its final punctuation and surrounding space."""
    return text.strip().rstrip(SENTENCE_END + "，,：: ").strip()


def without_article(body: str, heading: re.Pattern[str]) -> str:
    """A sentence without its leading article marker ("第十二条 ", "Article 12."), matched by ``heading`` (a
    language's ARTICLE_HEADING with a ``body`` group): the article rule asks about the marker itself."""
    m = heading.match(body)
    return m.group("body") if m else body


def choose_spans(spans: list[ValueSpan]) -> list[ValueSpan]:
    """Non-overlapping spans, earlier and longer first (a date wins over the year inside it)."""
    chosen: list[ValueSpan] = []
    for span in sorted(spans, key=lambda s: (s.start, -(s.end - s.start))):
        if all(span.start >= c.end or span.end <= c.start for c in chosen):
            chosen.append(span)
    return chosen


def find_spans(patterns: list[tuple[str, re.Pattern[str]]], sentence: str) -> list[ValueSpan]:
    spans = [ValueSpan(kind, m.start("v"), m.end("v"), m.group("v"))
             for kind, pattern in patterns for m in pattern.finditer(sentence)]
    return choose_spans(spans)
