"""The conversations each rung sends to the model, and mapping a generated answer onto a label set.

Rungs differ only in what they add around the question, so the ladder measures exactly what each route adds:
  prompt    system prompt + few-shot examples from the training split;
  rag       system prompt + retrieved passages in the user turn (no few-shot: the passages take that room);
  peft(+rag) the same conversations, answered with the adapter (the data stage trained it on both forms).
Every conversation is built by ``verticalize.answering`` — the gateway serves the same ones.
For classification the base-model rungs are told the label set; adapter rungs were trained on the bare format.
"""

from __future__ import annotations

import difflib
import json
import random
from pathlib import Path
from typing import Any, Sequence

from verticalize.answering import PromptStyle, build_messages, fit_passages  # noqa: F401  (re-exported)
from verticalize.evaluate.metrics import normalize_answer
from verticalize.rungs import Rung

OTHER_LABEL = "(other)"


def few_shot_examples(train_path: Path, n: int, task: str, seed: int) -> list[tuple[str, str]]:
    """``n`` (question, answer) pairs of the same task from the training split, seed examples first."""
    if n <= 0 or not train_path.is_file():
        return []
    seeds, others = [], []
    for line in train_path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
            meta = row.get("meta") or {}
            q, a = meta.get("question"), meta.get("answer")
            if q is None or a is None:
                turns = row["messages"]
                q = next(m["content"] for m in turns if m["role"] == "user")
                a = next(m["content"] for m in turns if m["role"] == "assistant")
        except (json.JSONDecodeError, KeyError, StopIteration, TypeError, AttributeError):
            continue
        if (meta.get("task") or "qa") != task or not str(q).strip() or not str(a).strip():
            continue
        if meta.get("form", "closed") != "closed":  # retrieval-augmented copies of the same pair
            continue
        if meta.get("generator") == "general_mix":  # data.general_mix: general skills, not the domain's form
            continue
        # Short examples keep the prompt small on CPU; human-written seeds are the best demonstrations.
        if len(str(q)) + len(str(a)) > 600:
            continue
        (seeds if meta.get("kind") == "seed" else others).append((str(q), str(a)))
    rng = random.Random(seed)
    rng.shuffle(seeds)
    rng.shuffle(others)
    return (seeds + others)[:n]


def build_conversation(rung: str | Rung, question: str, style: PromptStyle, *,
                       few_shot: Sequence[tuple[str, str]] = (), hits: Sequence[Any] = (),
                       labels: Sequence[str] = ()) -> list[dict[str, str]]:
    """The conversation one rung sends, through the one answering path (``verticalize.answering``)."""
    r = Rung.parse(rung)
    return build_messages(question, style, passages=hits if r.uses_knowledge_base else (),
                          few_shot=few_shot if r.uses_few_shot else (),
                          labels=labels if not r.trained else ())


def map_to_label(prediction: str, labels: Sequence[str]) -> str:
    """The label a free-text answer names: exact (normalised) match, else the first label mentioned, else the
    closest spelling; ``(other)`` when none fits (counted wrong, shown as its own confusion column)."""
    if not labels:
        return prediction.strip()
    norm = {normalize_answer(l): l for l in labels}
    pred = normalize_answer(prediction)
    if pred in norm:
        return norm[pred]
    mentioned = [(pred.find(k), -len(k), v) for k, v in norm.items() if k and k in pred]
    if mentioned:
        return min(mentioned)[2]
    close = difflib.get_close_matches(pred, list(norm), n=1, cutoff=0.6)
    return norm[close[0]] if close else OTHER_LABEL
