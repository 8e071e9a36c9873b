"""The ``rules`` generator: an offline, deterministic rule engine that turns chunks into question/answer pairs.

A chunk is read as lines: marked list runs (1. / （一） / 一、 / bullets) with their lead line, article headings
(第十二条 … / Article 12 …) and sentences. Each sentence goes to the Chinese rules (``rules_zh``) when it holds CJK
characters and to the English rules (``rules_en``) otherwise, so mixed documents work. Rule families: definition,
obligation/prohibition, condition, value (amount, percent, date, deadline, count), reference (citations), article,
list, and cloze. Every answer is a span of the chunk or a restatement built only from its words.

Pairs are taken round-robin over the families in that order (so the per-chunk cap keeps variety), duplicates and
questions that contain their answer are skipped, and ids hash (chunk id, rule, question): same input, same output.
"""

from __future__ import annotations

import re
from types import ModuleType

from verticalize.data import rules_en, rules_zh
from verticalize.data.generator_base import ChunkPairGenerator
from verticalize.data.rules_base import LIST_MARKER, SENTENCE_END, Candidate, ListBlock, marker_family
from verticalize.text import is_cjk, normalize

FAMILIES = ("definition", "obligation", "condition", "value", "reference", "article", "list", "cloze")
_FAMILY_OF = {"prohibition": "obligation", "amount": "value", "percent": "value", "date": "value",
              "deadline": "value", "count": "value"}

_ZH_SENTENCE = re.compile(r"[^。！？!?]+[。！？!?]*")
_EN_BOUNDARY = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"“(\[])")
_HEADING = re.compile(r"^#{1,6}\s+(?P<text>.+)$")
_TITLE_SPLIT = re.compile(r"\s*(?:>|/|›|»|\|)\s*")
_LAW_ZH = re.compile(r"《[^》]+》|[^\s《》]{2,30}(?:法|办法|条例|规定|细则|规则|制度|章程|合同|协议|指引)$")
_LAW_EN = re.compile(r"\b(?:Act|Regulations?|Rules|Policy|Agreement|Terms|Code|Handbook|Guide|Law)\b")
_ARTICLE_BODY_CHARS = 200
_CLOZE_LEN = (12, 160)


class RulesGenerator(ChunkPairGenerator):
    """Offline QA distillation. ``report()`` gives pairs per rule and chunks that produced nothing."""

    name = "rules"
    count_prefix = "rule"

    def __init__(self, *, max_per_chunk: int = 4, cloze: bool = True):
        super().__init__(max_per_chunk)
        self.cloze = cloze

    def pair_kind(self, pair: Candidate) -> str:
        return pair.rule

    def pairs_for(self, chunk: dict) -> list[Candidate]:
        """The chunk's pairs after round-robin selection, dedup and the cap."""
        by_family = self.candidates(chunk)
        chosen: list[Candidate] = []
        seen: set[str] = set()
        queues = [list(by_family.get(f, [])) for f in FAMILIES]
        while len(chosen) < self.max_per_chunk and any(queues):
            for queue in queues:
                while queue:
                    c = queue.pop(0)
                    key = normalize(c.question).casefold()
                    if key not in seen and _acceptable(c):
                        seen.add(key)
                        chosen.append(c)
                        break
                if len(chosen) >= self.max_per_chunk:
                    break
        return chosen

    def candidates(self, chunk: dict) -> dict[str, list[Candidate]]:
        """Every pair any rule proposes for the chunk, grouped by family, in reading order."""
        text = chunk.get("text") or ""
        sentences, articles, lists = read_structure(text, first_may_be_cut=(chunk.get("start") or 0) > 0)
        law = law_name(chunk.get("title") or "")
        out: dict[str, list[Candidate]] = {f: [] for f in FAMILIES}

        def add(candidates: list[Candidate]) -> None:
            for c in candidates:
                out[_FAMILY_OF.get(c.rule, c.rule)].append(c)

        for sentence in sentences:
            if sentence.endswith(("：", ":")):
                continue  # a list lead ("…提供以下材料：") is asked about by the list rule
            rules = _rules_for(sentence)
            for propose in (rules.definition_candidates, rules.obligation_candidates, rules.condition_candidates,
                            rules.value_candidates, rules.citation_candidates):
                add(propose(sentence))
        for article, body in articles:
            rules = _rules_for(body)
            add(rules.article_candidates(article, body, law if rules is rules_zh else _english_law(law)))
        for block in lists:
            lead = block.lead or (_TITLE_SPLIT.split(chunk.get("title") or "")[-1])
            if lead:
                rules = _rules_for(lead + "".join(block.items))
                out["list"].append(Candidate("list", rules.list_question(lead), "\n".join(block.items)))
        if self.cloze:
            add(cloze_candidates(sentences))
        return out


def _rules_for(text: str) -> ModuleType:
    return rules_zh if any(is_cjk(ch) for ch in text) else rules_en


def _acceptable(c: Candidate) -> bool:
    question, answer = normalize(c.question).casefold(), normalize(c.answer).casefold()
    return bool(answer.strip()) and len(question) <= 200 and answer not in question


# ---------------------------------------------------------------------------------------------- chunk structure
def read_structure(text: str, *, first_may_be_cut: bool = False
                   ) -> tuple[list[str], list[tuple[str, str]], list[ListBlock]]:
    """Sentences, (article, body) pairs and list blocks of a chunk, in reading order.

    A chunk may start or end in the middle of a sentence (chunk overlap), so an unterminated fragment at the end
    is not used, nor a first fragment that starts lower-case when the chunk does not start its document.
    """
    lines = [line.strip() for line in text.split("\n")]
    sentences: list[str] = []
    articles: list[tuple[str, str]] = []
    lists: list[ListBlock] = []
    previous = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line:
            i += 1
            continue
        if LIST_MARKER.match(line):
            items, i = _list_run(lines, i)
            if len(items) >= 2:
                lists.append(ListBlock(_lead_of(previous), items))
            for item in items:
                sentences.extend(split_sentences(LIST_MARKER.sub("", item, count=1)))
            previous = ""
            continue
        if line.count("|") >= 2:  # a table row: cells are not sentences
            previous = ""
            i += 1
            continue
        heading = _HEADING.match(line)
        if heading:
            previous = heading.group("text")
            i += 1
            continue
        article = rules_zh.ARTICLE_HEADING.match(line) or rules_en.ARTICLE_HEADING.match(line)
        if article:
            articles.append((article.group("art"), _article_body(article.group("body"))))
        sentences.extend(split_sentences(line))
        previous = line
        i += 1
    if sentences and not text.rstrip().endswith(tuple(SENTENCE_END)) and not _is_complete(sentences[-1]):
        sentences.pop()
    if sentences and first_may_be_cut and (sentences[0][:1].islower() or sentences[0][:1] in "，,、；;）)"):
        sentences.pop(0)
    return sentences, articles, lists


def split_sentences(line: str) -> list[str]:
    out = []
    for piece in _ZH_SENTENCE.findall(line):
        out.extend(s.strip() for s in _EN_BOUNDARY.split(piece) if s.strip())
    return out


def _is_complete(sentence: str) -> bool:
    return sentence.endswith(tuple(SENTENCE_END))


def _list_run(lines: list[str], i: int) -> tuple[list[str], int]:
    """The run of items starting at ``lines[i]`` with the same marker style, and the index after it."""
    family = marker_family(lines[i])
    items: list[str] = []
    while i < len(lines):
        if lines[i] and marker_family(lines[i]) == family:
            items.append(lines[i])
            i += 1
        elif not lines[i] and i + 1 < len(lines) and marker_family(lines[i + 1]) == family:
            i += 1  # a blank line between items does not end the list
        else:
            break
    return items, i


def _lead_of(previous: str) -> str:
    """The last sentence of the line before a list introduces it when it ends with a colon or says
    "以下/下列/the following"."""
    if not previous:
        return ""
    last = split_sentences(previous)[-1].lstrip("，,；; ")
    if last.endswith(("：", ":")) or re.search(r"以下|下列|如下|the following|as follows", last, re.I):
        return last
    return ""


def _article_body(first: str) -> str:
    """The article's text on its heading line, cut to whole sentences within the size limit."""
    if len(first) <= _ARTICLE_BODY_CHARS:
        return first
    sentences = split_sentences(first)
    kept = sentences[0]
    for s in sentences[1:]:
        if len(kept) + len(s) > _ARTICLE_BODY_CHARS:
            break
        kept += ("" if is_cjk(s[0]) else " ") + s
    return kept


def law_name(title: str) -> str:
    """The law/regulation named by the chunk's heading path ("《信用卡管理办法》 > 第三章" → 《信用卡管理办法》)."""
    for part in _TITLE_SPLIT.split(title):
        part = part.strip().lstrip("#").strip()
        m = _LAW_ZH.search(part)
        if m:
            name = m.group(0)
            return name if name.startswith("《") else f"《{name}》"
        if _LAW_EN.search(part):
            return part
    return ""


def _english_law(law: str) -> str:
    if not law or law.startswith("《"):
        return ""
    return law if law.lower().startswith("the ") else f"the {law}"


# ---------------------------------------------------------------------------------------------- cloze
def cloze_candidates(sentences: list[str]) -> list[Candidate]:
    """One fill-in question: the last sentence of usable length with a value, blanking its last value."""
    for sentence in reversed(sentences):
        if not _CLOZE_LEN[0] <= len(sentence) <= _CLOZE_LEN[1]:
            continue
        rules = _rules_for(sentence)
        spans = rules.value_spans(sentence)
        if not spans:
            continue
        span = spans[-1]
        masked = sentence[: span.start] + "____" + sentence[span.end:]
        return [Candidate("cloze", rules.cloze_question(masked), span.text.strip())]
    return []


__all__ = ["RulesGenerator", "read_structure", "split_sentences", "law_name", "cloze_candidates"]
