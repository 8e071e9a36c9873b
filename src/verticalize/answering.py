"""The one answering path: every conversation the model is shown is built here, and answers are read back here.

Training (the data stage's retrieval-augmented examples), the evaluation ladder and the gateway all call
``build_messages``, so the prompt an adapter was trained on is the prompt it is measured on and served with:

    system     project.system_prompt (or the client's own system message at the gateway)
    few-shot   (prompt rung only) user/assistant pairs
    user       without passages: the question alone;
               with passages:    the numbered passages, one line telling the model to answer from them (and,
                                 with project.refusal_instruction, to give the refusal answer otherwise), then
                                 the question.

The refusal answer is one fixed phrase per language (``project.refusal``): a model trained to say exactly it can
be scored (refusal rate on unanswerable questions, false refusals on answerable ones) without a judge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from verticalize.text import HAN_RANGES, detect_lang, is_cjk, tokens_for_match

DEFAULT_REFUSAL = {"en": "The documents do not contain the answer.", "zh": "资料中没有答案。"}
# Refusals a base model words its own way; the configured phrases are matched on top of these.
_REFUSAL_PATTERNS = re.compile(
    r"(do(?:es)? not (?:contain|mention|say|provide|include)|not (?:mentioned|stated|given) in|"
    r"no (?:information|answer|mention)|cannot (?:be )?(?:answer|determin|find)|can't (?:answer|find)|"
    r"i don't know|i do not know|unable to (?:answer|find|determine)|"
    r"没有答案|无法回答|没有提到|未提及|没有相关|无法确定|不知道|资料中没有|没有提供)", re.IGNORECASE)
_PASSAGE_HEADER = {"en": "Passages:", "zh": "参考资料："}
_INSTRUCTION = {"en": "Answer the question with a short span copied from the passages.",
                "zh": "用资料原文中的词语简短回答问题。"}
_REFUSAL_INSTRUCTION = {"en": " If they do not contain the answer, reply: {refusal}",
                        "zh": "如果资料中没有答案，回答：{refusal}"}
_QUESTION = {"en": "Question: {q}", "zh": "问题：{q}"}


@dataclass(frozen=True)
class Passage:
    """A retrieved (or, in training, chosen) chunk as the model sees it."""

    text: str
    source: str = ""
    chunk_id: str = ""


@dataclass(frozen=True)
class PromptStyle:
    """What the project configures about the prompt: the system prompt, the refusal phrases and the longest
    passage shown (estimated tokens; a longer chunk is shown as its window around the question)."""

    system_prompt: str
    refusal: Mapping[str, str]
    passage_tokens: int = 200
    refusal_instruction: bool = False

    @classmethod
    def from_config(cls, cfg: Any) -> "PromptStyle":
        return cls(system_prompt=cfg.project.system_prompt, refusal=dict(cfg.project.refusal),
                   passage_tokens=cfg.data.context.passage_tokens,
                   refusal_instruction=cfg.project.refusal_instruction)

    def refusal_for(self, question: str) -> str:
        lang = language_of(question)
        return self.refusal.get(lang) or DEFAULT_REFUSAL[lang]


def language_of(text: str) -> str:
    """'zh' for text that is mostly (or partly) Chinese, else 'en': picks the prompt wording and refusal."""
    return "en" if detect_lang(text) == "en" else "zh"


def as_passage(hit: Any) -> Passage:
    """A KB hit, a dict (gateway sources) or a Passage, as a Passage."""
    if isinstance(hit, Passage):
        return hit
    if isinstance(hit, Mapping):
        return Passage(str(hit.get("text", "")), str(hit.get("source", "")), str(hit.get("chunk_id", "")))
    return Passage(str(hit.text), str(getattr(hit, "source", "")), str(getattr(hit, "chunk_id", "")))


_EN_SENTENCE = re.compile(r"(?<=[.!?;])\s+")
_ZH_SENTENCE = re.compile(r"(?<=[。！？；\n])")
_STOP = {"the", "a", "an", "of", "in", "on", "to", "and", "or", "is", "was", "were", "are", "what", "which", "who",
         "when", "where", "how", "why", "did", "does", "do", "for", "by", "with", "as", "at", "from", "that",
         "this", "it", "be", "its", "their", "his", "her", "many", "much", "的", "是", "了", "在", "和", "什么",
         "哪", "谁", "多", "少", "几", "吗", "呢", "有", "为"}


_HAN_CHAR = re.compile(f"[{HAN_RANGES}]")


def estimated_tokens(text: str) -> float:
    """A tokenizer-free length estimate (a Han character ~1.5 tokens of a Latin-centred vocabulary, ~4 other
    characters per token): passages are budgeted with it where no tokenizer is loaded (the data stage)."""
    han = len(_HAN_CHAR.findall(text))
    return han * 1.5 + (len(text) - han) / 4


def sentences(text: str) -> list[str]:
    """The sentences of a passage (Chinese and English sentence ends)."""
    parts = _ZH_SENTENCE.split(text) if detect_lang(text) != "en" else _EN_SENTENCE.split(text)
    return [p for p in (x.strip() for x in parts) if p]


def _units(text: str) -> set[str]:
    """Words (other scripts) and character bigrams (CJK): what a sentence shares with a question."""
    tokens = tokens_for_match(text)
    out = {t for t in tokens if len(t) > 1 and t not in _STOP}
    out.update(a + b for a, b in zip(tokens, tokens[1:]) if len(a) == len(b) == 1 and is_cjk(a) and is_cjk(b))
    return out


def _overlap(sentence: str, query: set[str]) -> int:
    return len(_units(sentence) & query)


def focus(text: str, question: str, budget: float, must_contain: str = "") -> str:
    """The part of a passage shown to the model: the whole text when it fits ``budget`` (estimated tokens), else
    the run of sentences around the one that shares most words with the question, grown while it fits. A small
    model reads a short window far better than a long chunk. ``must_contain`` (training: the answer) moves the
    window onto the answer's sentence when the question's best sentence does not hold it."""
    text = " ".join(text.split()) if detect_lang(text) == "en" else text.strip()
    if estimated_tokens(text) <= budget:
        return text
    sents = sentences(text) or [text]
    query = _units(question)
    scores = [_overlap(s, query) for s in sents]
    best = max(range(len(sents)), key=lambda i: (scores[i], -i))
    if must_contain and must_contain not in sents[best]:
        best = next((i for i, s in enumerate(sents) if must_contain in s), best)
    lo = hi = best
    used = estimated_tokens(sents[best])
    while True:
        grown = False
        for j in (hi + 1, lo - 1):  # after first: an answer often follows its cue
            if 0 <= j < len(sents) and used + estimated_tokens(sents[j]) <= budget:
                used += estimated_tokens(sents[j])
                lo, hi = min(lo, j), max(hi, j)
                grown = True
        if not grown:
            break
    joiner = " " if detect_lang(text) == "en" else ""
    window = joiner.join(sents[lo:hi + 1])
    if estimated_tokens(window) > budget * 1.5:  # one very long sentence: cut by characters
        ratio = budget / estimated_tokens(window)
        window = window[: max(20, int(len(window) * ratio))]
    return window


def user_turn(question: str, passages: Sequence[Any], style: PromptStyle, *, focused: bool = False) -> str:
    """The user message: the question alone, or passages + instruction + question. Passages are cut to their
    window around the question (``focus``) unless ``focused`` says the caller did it already."""
    if not passages:
        return question
    lang = language_of(question)
    lines = [_PASSAGE_HEADER[lang]]
    for i, p in enumerate(map(as_passage, passages), 1):
        text = p.text if focused else focus(p.text, question, style.passage_tokens)
        lines.append(f"[{i}] {text}")
    instruction = _INSTRUCTION[lang]
    if style.refusal_instruction:
        instruction += _REFUSAL_INSTRUCTION[lang].format(refusal=style.refusal_for(question))
    lines += ["", instruction, _QUESTION[lang].format(q=question)]
    return "\n".join(lines)


def build_messages(question: str, style: PromptStyle, *, passages: Sequence[Any] = (),
                   few_shot: Sequence[tuple[str, str]] = (), labels: Sequence[str] = (),
                   system: str | None = None, history: Sequence[Mapping[str, str]] = ()) -> list[dict[str, str]]:
    """The conversation for one question. ``system`` replaces the project's system prompt (a client's own);
    ``history`` holds earlier turns of a chat (gateway); ``labels`` (classification) are named in the system turn."""
    sys_text = style.system_prompt if system is None else system
    if labels:
        sys_text += ("\n只回答以下标签之一：" if language_of(question) == "zh"
                     else "\nAnswer with exactly one of these labels: ") + ", ".join(labels)
    messages = [{"role": "system", "content": sys_text}] if sys_text else []
    for q, a in few_shot:
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    messages += [{"role": str(m["role"]), "content": str(m["content"])} for m in history]
    messages.append({"role": "user", "content": user_turn(question, passages, style)})
    return messages


def is_refusal(answer: str, style: PromptStyle | None = None) -> bool:
    """Whether an answer says the documents do not hold the answer (the configured phrase or a common wording)."""
    text = answer.strip()
    if not text:
        return False
    phrases = list((style.refusal if style else DEFAULT_REFUSAL).values())
    squashed = re.sub(r"[\s。.!！]", "", text.lower())
    if any(re.sub(r"[\s。.!！]", "", p.lower()) in squashed for p in phrases if p):
        return True
    return bool(_REFUSAL_PATTERNS.search(text[:200]))


def fit_passages(make: Callable[[Sequence[Passage]], list[dict[str, str]]], passages: Sequence[Any],
                 count_tokens: Callable[[list[dict[str, str]]], int], budget: int) -> tuple[list[dict[str, str]], int]:
    """The conversation ``make(passages)`` cut to ``budget`` tokens by dropping the lowest-ranked passages, then
    halving the last one, so the system prompt and the question are never cut. Returns (conversation, passages
    dropped or shortened)."""
    kept = [as_passage(p) for p in passages]
    conv = make(kept)
    changed = 0
    while kept and count_tokens(conv) > budget:
        if len(kept) > 1:
            kept.pop()
        elif len(kept[0].text) < 40:
            kept.pop()
        else:
            last = kept[0]
            kept[0] = Passage(last.text[: len(last.text) // 2], last.source, last.chunk_id)
        changed += 1
        conv = make(kept)
    return conv, changed
