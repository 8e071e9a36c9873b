"""Augmentation: new examples made from existing ones, each traceable to its parent.

Operations (each enabled in ``data.augment``), tried per example in a seeded order until ``max_per_example``
variants exist:

- ``entity_replacement``: glossary terms swapped for their replacements in question AND answer, in one pass (so
  replacements never chain); made only when a term occurs. A fictional-entity swap keeps the facts true.
- ``synonym_swap``: one glossary synonym swapped in the question only (the answer stays the reference).
- ``list_reorder``: a list answer's items in another order, markers and punctuation left in place (1. 2. 3.
  still read in order); not for questions about steps or order.
- ``back_translation``: the question translated zh↔en through the teacher and back.
- ``paraphrase``: the question reworded by the teacher.

Only seed and synthetic examples are augmented (never an augmented one). A new example copies its parent's
provenance (doc id, source, chunk ids, task, label), has ``meta.kind == "augmented"``, ``meta.parent_id`` and
``meta.generator == "augment:<op>"``. The returned Counter holds ``made:<op>`` and ``<op>:<reason>`` for attempts
that produced nothing worth keeping (teacher failure, unchanged text, no teacher).
"""

from __future__ import annotations

import logging
import random
import re
from collections import Counter
from typing import Any, Callable

from verticalize.config import AugmentConfig
from verticalize.data import schema
from verticalize.data.augment_glossary import Glossary, load_glossary, term_pattern
from verticalize.data.rules_base import LIST_MARKER
from verticalize.text import detect_lang, normalize

OPS = ("entity_replacement", "synonym_swap", "list_reorder", "back_translation", "paraphrase")
TEACHER_OPS = ("back_translation", "paraphrase")
_ORDER_WORDS = re.compile(r"步骤|顺序|先后|首先|第[一二三四五六七八九十\d]+步|\bsteps?\b|\border\b|\bsequence\b|\bfirst\b",
                          re.IGNORECASE)
_ITEM_END = re.compile(r"[；;。.，,]+$")
_LANG_NAME = {"zh": "Simplified Chinese", "en": "English"}

Variant = tuple[str, str]  # (question, answer)
log = logging.getLogger(__name__)


def augment(examples: list[dict], aug_cfg: AugmentConfig, *, teacher: Any = None,
            seed: int = 0) -> tuple[list[dict], Counter]:
    """NEW augmented examples only (parents are not returned), and counts of what was made or refused."""
    counts: Counter = Counter()
    glossary = load_glossary(aug_cfg.glossary) if aug_cfg.glossary else Glossary()
    if glossary.skipped_rows:
        counts["glossary:skipped_rows"] = len(glossary.skipped_rows)
        for problem in glossary.skipped_rows[:20]:
            log.warning("glossary row skipped: %s", problem)
    ops = _enabled_ops(aug_cfg, glossary)
    if not ops or aug_cfg.max_per_example <= 0:
        return [], counts
    augmenter = _Augmenter(glossary, teacher)
    parents = [e for e in examples if schema.kind_of(e) in ("seed", "synthetic")]

    def run(parent: dict) -> tuple[list[dict], Counter]:
        rng = random.Random(f"{seed}:{parent.get('id')}")
        order = list(ops)
        rng.shuffle(order)
        made: list[dict] = []
        local: Counter = Counter()
        for op in order:
            if len(made) >= aug_cfg.max_per_example:
                break
            variant, reason = augmenter.apply(op, parent, rng)
            if variant is None:
                if reason:
                    local[f"{op}:{reason}"] += 1
                continue
            made.append(_child(parent, op, *variant))
            local[f"made:{op}"] += 1
        return made, local

    uses_teacher = teacher is not None and any(op in TEACHER_OPS for op in ops)
    results = teacher.map(run, parents) if uses_teacher and hasattr(teacher, "map") else [run(p) for p in parents]
    out: list[dict] = []
    for made, local in results:
        out.extend(made)
        counts.update(local)
    return out, counts


def _enabled_ops(cfg: AugmentConfig, glossary: Glossary) -> list[str]:
    wanted = {"entity_replacement": cfg.entity_replacement and bool(glossary.entities),
              "synonym_swap": cfg.synonym_swap and bool(glossary.synonyms),
              "list_reorder": cfg.list_reorder, "back_translation": cfg.back_translation,
              "paraphrase": cfg.paraphrase}
    return [op for op in OPS if wanted[op]]


def _child(parent: dict, op: str, question: str, answer: str) -> dict:
    meta = parent.get("meta") or {}
    known = {"kind", "task", "source", "doc_id", "chunk_ids", "generator", "parent_id", "question", "answer", "label",
             "id", "messages"}
    extra = {k: v for k, v in meta.items() if k not in known}
    generator = f"augment:{op}"
    return schema.make_example(
        question, answer, kind="augmented", generator=generator, task=meta.get("task") or "qa",
        source=meta.get("source"), doc_id=meta.get("doc_id"), chunk_ids=meta.get("chunk_ids") or [],
        parent_id=parent.get("id"), label=meta.get("label"),
        id=schema.stable_id("aug", parent.get("id"), generator, question, answer), **extra)


class _Augmenter:
    """The operations; each returns ((question, answer), None) or (None, reason-or-None)."""

    def __init__(self, glossary: Glossary, teacher: Any):
        self.glossary = glossary
        self.teacher = teacher
        self.entity_re = term_pattern(list(glossary.entities))
        # Synonyms are found among ALL glossary terms, longest first, so a synonym inside a longer known term
        # (借款 inside the entity 借款人) is left alone.
        self.term_re = term_pattern(list(glossary.synonyms) + list(glossary.entities))
        # "the borrower" -> "Acme Ltd", not "the Acme Ltd", when a common noun becomes a proper name.
        names = [r for t, r in glossary.entities.items() if t[:1].islower() and r[:1].isupper()]
        self.article_re = re.compile(r"\b([Tt])he (" + "|".join(map(re.escape, names)) + r")\b") if names else None

    def apply(self, op: str, parent: dict, rng: random.Random) -> tuple[Variant | None, str | None]:
        question, answer = schema.question_of(parent), schema.answer_of(parent)
        is_label = (parent.get("meta") or {}).get("task") == "classification"
        fn: Callable[..., tuple[Variant | None, str | None]] = getattr(self, op)
        return fn(question, answer, is_label, rng)

    def entity_replacement(self, question: str, answer: str, is_label: bool, rng: random.Random):
        if self.entity_re is None:
            return None, None

        def swap(text: str) -> str:
            text = self.entity_re.sub(lambda m: self.glossary.entities[m.group(0)], text)
            if self.article_re is not None:
                text = self.article_re.sub(lambda m: m.group(2) if m.group(1) == "t" else _cap(m.group(2)), text)
            return text

        new_q, new_a = swap(question), answer if is_label else swap(answer)
        if (new_q, new_a) == (question, answer):
            return None, None  # no glossary term in this pair: nothing to do, not a failure
        return (new_q, new_a), None

    def synonym_swap(self, question: str, answer: str, is_label: bool, rng: random.Random):
        if self.term_re is None:
            return None, None
        matches = [m for m in self.term_re.finditer(question) if m.group(0) in self.glossary.synonyms]
        if not matches:
            return None, None
        term = rng.choice(sorted({m.group(0) for m in matches}))
        alternative = rng.choice(self.glossary.synonyms[term])
        new_q = self.term_re.sub(lambda m: alternative if m.group(0) == term else m.group(0), question)
        return (new_q, answer), None

    def list_reorder(self, question: str, answer: str, is_label: bool, rng: random.Random):
        lines = [line for line in answer.split("\n") if line.strip()]
        if is_label or len(lines) < 2 or not all(LIST_MARKER.match(line) for line in lines):
            return None, None
        if _ORDER_WORDS.search(question):
            return None, "ordered_list"
        markers = [LIST_MARKER.match(line).group(0) for line in lines]
        bodies = [line[len(marker):] for line, marker in zip(lines, markers)]
        ends = [(_ITEM_END.search(b).group(0) if _ITEM_END.search(b) else "") for b in bodies]
        contents = [_ITEM_END.sub("", b) for b in bodies]
        order = list(range(len(contents)))
        while order == sorted(order):
            rng.shuffle(order)
        if [contents[i] for i in order] == contents:
            return None, "identical_items"
        new_lines = [markers[k] + contents[i] + ends[k] for k, i in enumerate(order)]
        return (question, "\n".join(new_lines)), None

    def back_translation(self, question: str, answer: str, is_label: bool, rng: random.Random):
        if self.teacher is None:
            return None, "no_teacher"
        lang = detect_lang(question)
        if lang == "mixed":
            return None, "mixed_language"
        pivot = "en" if lang == "zh" else "zh"
        there = self._ask(_translate_messages(question, pivot), "translation")
        back = self._ask(_translate_messages(there, lang), "translation") if there else None
        return self._keep(question, back, answer)

    def paraphrase(self, question: str, answer: str, is_label: bool, rng: random.Random):
        if self.teacher is None:
            return None, "no_teacher"
        lang = _LANG_NAME.get(detect_lang(question), "the same language as the question")
        reply = self._ask([
            {"role": "system", "content": "You reword questions without changing their meaning. Reply with JSON only."},
            {"role": "user", "content": f"Reword this question in {lang}, keeping every name, number and term "
                                        f"exact and the meaning identical:\n{question}\n\n"
                                        'Reply with JSON only: {"paraphrase": "..."}'}], "paraphrase")
        return self._keep(question, reply, answer)

    def _ask(self, messages: list[dict], key: str) -> str | None:
        try:
            reply = self.teacher.complete_json(messages)
        except Exception:  # noqa: BLE001 - a teacher failure skips this variant; the teacher counts it
            return None
        value = reply.get(key) if isinstance(reply, dict) else None
        return value.strip() if isinstance(value, str) and value.strip() else None

    @staticmethod
    def _keep(question: str, new_question: str | None, answer: str) -> tuple[Variant | None, str | None]:
        if not new_question:
            return None, "teacher_failed"
        if normalize(new_question).casefold() == normalize(question).casefold():
            return None, "unchanged"
        return (new_question, answer), None


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _translate_messages(text: str, target: str) -> list[dict]:
    return [
        {"role": "system", "content": "You are a precise translator. Reply with JSON only."},
        {"role": "user", "content": f"Translate into {_LANG_NAME[target]}. Keep names, numbers and terms of art "
                                    f"exact; translate meaning, not word by word:\n{text}\n\n"
                                    'Reply with JSON only: {"translation": "..."}'},
    ]
