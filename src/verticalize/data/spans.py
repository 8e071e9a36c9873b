"""The ``spans`` generator: answer-first, offline question/answer pairs that teach reading, not one answer shape.

For every sentence of a chunk (split by ``rules.read_structure``: list items, headings and table rows handled as
there), the language module (``spans_en`` for Latin text, ``spans_zh`` for text with CJK characters) first picks
answer spans of many kinds — person / organisation / place / other names, terms, numbers with units, dates and
years, definitions ("X is a Y", "X是Y"), conditions and causes — and then writes a question from the short clause
around the span, the span replaced by a wh-phrase that fits its kind (who / which organisation / where / when /
in what year / how many / what; 谁 / 哪个机构 / 哪里 / 何时 / 哪一年 / 多少 / 什么), fronted where that is cheap.

A question must stand on its own in a corpus of many documents, so it names its subject: a clause whose subject
is a pronoun ("It", "They", "他", "其", "该公司") gets the named subject of the sentence before it or, failing
that, the document's title (when the chunk mentions it); with neither the sentence is skipped.

Every pair then passes ``acceptable``: a question of 4–25 words (6–40 CJK characters) that does not contain its
answer and is not most of a long sentence verbatim; an answer of at most 12 words (20 CJK characters) that is a
verbatim span of the chunk; no list markers or citation debris. Per chunk at most ``max_per_chunk`` pairs are
taken round-robin over the kinds (the order rotated by a hash of the chunk id, so no kind always goes first), and
ids hash (chunk, kind, question, answer): same input, same output. ``report()`` counts pairs per kind, chunks
without pairs and rejected candidates per reason.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from pathlib import PurePath

from verticalize.data import spans_en, spans_zh
from verticalize.data.generator_base import ChunkPairGenerator
from verticalize.data.rules import read_structure
from verticalize.data.rules_base import LIST_MARKER
from verticalize.data.spans_base import (LONG_SENTENCE_CJK, LONG_SENTENCE_WORDS, MAX_A_CJK, MAX_A_WORDS, MAX_Q_CJK,
                                         MAX_Q_WORDS, MAX_VERBATIM_SHARE, MIN_Q_CJK, MIN_Q_WORDS, WORD, Context,
                                         SpanPair, cjk_length, word_count)
from verticalize.text import is_cjk, normalize

KINDS = ("definition", "person", "org", "place", "date", "year", "number", "term", "name", "condition", "cause")

# Debris of layout and references: bullets, pipes, citation markers, statistics, links.
_DEBRIS = re.compile(r"[▪■□◆◇●•|\t]|\b(?:CI|OR|HR|RR|IQR|SD|SE|aOR|aHR)\b\s*[:=]?\s*\d|\b(?:p|P|n|N)\s*[=<>≤≥]|"
                     r"https?://|www\.|\b[Dd][Oo][Ii]\b|©|\bet al\b|^\s*\(?\d{1,3}\)|\(\d{1,3}\)\s*[▪:]|"
                     r"\[\d+(?:[,–-]\d+)*\]|\d\s*[-–]\s*\d+(?:\.\d+)?\s*\)|\bCI\b")
_LIST_NUMBERING = re.compile(r"^\s*(?:\d{1,3}\s*[.、)）:：]|[（(]\s*\d{1,3}\s*[)）]|[一二三四五六七八九十]{1,3}\s*[、.]|"
                             r"[a-zA-Z]\s*[.)]\s)")
_GENERIC_TITLES = {
    "introduction", "background", "methods", "materials and methods", "results", "discussion", "conclusion",
    "conclusions", "abstract", "summary", "references", "history", "overview", "contents", "appendix", "index",
    "readme", "document", "untitled", "notes", "preface", "acknowledgements", "acknowledgments",
    "引言", "摘要", "背景", "方法", "结果", "讨论", "结论", "参考文献", "概述", "简介", "历史", "目录", "附录", "前言", "说明"}


class SpanGenerator(ChunkPairGenerator):
    """Offline answer-first QA distillation. ``report()`` gives pairs per kind, chunks without pairs and the
    candidates rejected per reason."""

    name = "spans"

    def __init__(self, *, max_per_chunk: int = 4):
        super().__init__(max_per_chunk)

    def pairs_for(self, chunk: dict) -> list[SpanPair]:
        """The chunk's pairs: acceptable candidates taken round-robin over the kinds, one answer once."""
        by_kind: dict[str, list[SpanPair]] = {}
        for p in self.candidates(chunk):
            by_kind.setdefault(p.kind, []).append(p)
        present = [k for k in KINDS if k in by_kind] + sorted(k for k in by_kind if k not in KINDS)
        if not present:
            return []
        turn = int(hashlib.sha1(str(chunk.get("id", "")).encode("utf-8")).hexdigest()[:8], 16) % len(present)
        order = present[turn:] + present[:turn]
        chosen: list[SpanPair] = []
        answers: set[str] = set()
        questions: set[str] = set()
        sentences: Counter = Counter()
        while len(chosen) < self.max_per_chunk and any(by_kind[k] for k in order):
            for kind in order:
                queue = by_kind[kind]
                fresh = [p for p in queue if p.answer.casefold() not in answers
                         and normalize(p.question).casefold() not in questions]
                queue[:] = fresh
                if not queue:
                    continue
                # Prefer a sentence not asked about yet, so the pairs of a chunk spread over its text.
                pick = min(queue, key=lambda p: sentences[p.sentence])
                queue.remove(pick)
                chosen.append(pick)
                answers.add(pick.answer.casefold())
                questions.add(normalize(pick.question).casefold())
                sentences[pick.sentence] += 1
                if len(chosen) >= self.max_per_chunk:
                    break
        return chosen

    def candidates(self, chunk: dict) -> list[SpanPair]:
        """Every acceptable pair the chunk's sentences give, in reading order (rejections are counted)."""
        text = chunk.get("text") or ""
        sentences, _, _ = read_structure(text, first_may_be_cut=(chunk.get("start") or 0) > 0)
        ctx = Context(title=document_title(chunk), text=text,
                      lowercase_words=frozenset(re.findall(r"\b[a-z][a-z'-]+\b", text)),
                      proper_words=frozenset(re.findall(r"(?<=[a-z0-9,;] )[A-Z][\w'’-]*", text)))
        ctx.referent = ""  # at the start of a chunk a pronoun stands for the document's subject (its title)
        out: list[SpanPair] = []
        for sentence in sentences:
            if sentence.endswith(("：", ":")):
                continue  # a list lead: the rules generator asks about the list
            module = spans_zh if any(is_cjk(ch) for ch in sentence) else spans_en
            for pair in module.sentence_pairs(sentence, ctx):
                reason = rejection(pair, text)
                if reason:
                    self.counts[f"rejected:{reason}"] += 1
                else:
                    out.append(pair)
        return out


# ---------------------------------------------------------------------------------------------- checks
def _is_zh(text: str) -> bool:
    return any(is_cjk(ch) for ch in text)


def rejection(pair: SpanPair, chunk_text: str) -> str | None:
    """Why ``pair`` is not a good pair (a short reason), or None when it is kept."""
    q, a = pair.question.strip(), pair.answer.strip()
    if not q or not a:
        return "empty"
    if a not in chunk_text:
        return "answer_not_verbatim"
    if normalize(a).casefold() in normalize(q).casefold():
        return "question_contains_answer"
    zh = _is_zh(q)
    q_len = cjk_length(q) if zh else word_count(q)
    short_ok = pair.kind in ("definition", "term")  # "What is Paris?", "张伟是谁？" are whole questions
    if q_len < (MIN_Q_CJK if zh else MIN_Q_WORDS) - (2 if zh and short_ok else 1 if short_ok else 0):
        return "question_fragment"
    if q_len > (MAX_Q_CJK if zh else MAX_Q_WORDS):
        return "question_too_long"
    a_len = cjk_length(a) if _is_zh(a) else word_count(a)
    if a_len == 0 or a_len > (MAX_A_CJK if _is_zh(a) else MAX_A_WORDS):
        return "answer_too_long" if a_len else "answer_without_words"
    if _DEBRIS.search(q) or _DEBRIS.search(a) or a.strip("()[]（）") != a.strip() and len(a) < 6:
        return "debris"
    if _LIST_NUMBERING.match(q) or LIST_MARKER.match(q):
        return "list_numbering"
    if q.count("(") != q.count(")") or q.count("（") != q.count("）") or q.count("“") != q.count("”") \
            or q.count('"') % 2 or q.count("《") != q.count("》"):
        return "unbalanced"
    s_len = cjk_length(pair.sentence) if zh else word_count(pair.sentence)
    if s_len > (LONG_SENTENCE_CJK if zh else LONG_SENTENCE_WORDS) and _verbatim_share(q, pair.sentence, zh) > \
            MAX_VERBATIM_SHARE:
        return "question_is_the_sentence"
    return None


def _verbatim_share(question: str, sentence: str, zh: bool) -> float:
    """Share of the sentence's tokens that the question repeats (bag of tokens; CJK characters one each)."""
    def tokens(text: str) -> list[str]:
        if zh:
            return [ch for ch in text if is_cjk(ch)] + [w.lower() for w in WORD.findall(text)]
        return [w.lower() for w in WORD.findall(text)]

    sent = Counter(tokens(sentence))
    if not sent:
        return 0.0
    shared = sum((Counter(tokens(question)) & sent).values())
    return shared / sum(sent.values())


# ---------------------------------------------------------------------------------------------- title
def document_title(chunk: dict) -> str:
    """The chunk's document title when it can stand for the document's subject in a question, else "".

    Taken from the top of the chunk's heading path (``title``: "Normans > History" → "Normans"), else the
    chunk's first markdown heading, else its first line when that reads as a title (a document's start, no
    final punctuation), else the source file's stem ("docs/Rhine.txt" → "Rhine"). A heading or a stem is used
    only when the chunk's text mentions it (so it is this text's subject, not a file name or a section label);
    a title is short (at most 8 words / 16 CJK characters) and not a generic section name ("Methods", "摘要").
    """
    text = chunk.get("text") or ""
    candidates = []
    path = str(chunk.get("title") or "")
    if path:
        candidates.append(re.split(r"\s+>\s+", path)[0])
    heading = re.search(r"^#{1,6}\s+(.+?)\s*#*$", text, re.MULTILINE)
    if heading:
        candidates.append(heading.group(1))
    first_line = text.lstrip().split("\n", 1)[0].strip()
    if not chunk.get("start") and "\n" in text.strip() and first_line and not first_line.endswith(
            ("。", ".", "！", "!", "？", "?", "：", ":", "；", ";", "，", ",")):
        candidates.append(first_line)  # a plain-text document's title line
    source = str(chunk.get("source") or "").split("#")[0]
    if source:
        candidates.append(re.sub(r"[_]+", " ", PurePath(source).stem))
    body = "\n".join(line for line in text.split("\n") if not line.lstrip().startswith("#"))
    for raw in candidates:
        title = raw.strip().lstrip("#").strip()
        if title and not _is_zh(title):
            title = re.split(r"\s*[\[(]", title)[0].strip() or title  # "Smith v Jones [2019] EWHC 1 (QB)"
        if not title or title.casefold() in _GENERIC_TITLES:
            continue
        zh = _is_zh(title)
        if zh and not 2 <= cjk_length(title) <= 16:
            continue
        if not zh and not 1 <= word_count(title) <= 8:
            continue
        if not zh and (not re.search(r"[A-Za-z]", title) or len(title) < 3):
            continue
        if first_line.startswith(title) and raw in (first_line, heading.group(1) if heading else None):
            return title
        if zh:
            if title in body:
                return title
            continue
        found = [m.group(0) for m in re.finditer(rf"(?<![\w-]){re.escape(title)}(?![\w-])", body, re.IGNORECASE)]
        if title in found and title[:1].isupper():
            return title
        named = [f for f in found if f[:1].isupper()]  # a lower-case file stem ("rhine") as the text writes it
        if named:
            return named[0]
    return ""


__all__ = ["SpanGenerator", "SpanPair", "Context", "document_title", "rejection", "KINDS"]
