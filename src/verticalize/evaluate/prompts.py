"""The conversations each rung sends to the model, and mapping a generated answer onto a label set.

Rungs differ only in what they add around the question, so the ladder measures exactly what each route adds:
  prompt    system prompt + few-shot examples from the training split;
  rag       system prompt + retrieved passages in the user turn (no few-shot: the passages take that room);
  peft(+rag) the training format (system prompt + question), with passages for peft+rag.
For classification the base-model rungs are told the label set; adapter rungs were trained on the bare format.
"""

from __future__ import annotations

import difflib
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from verticalize.evaluate.metrics import normalize_answer

_CJK = re.compile(r"[\u3400-\u9fff]")
OTHER_LABEL = "(other)"


def is_chinese(text: str) -> bool:
    return bool(_CJK.search(text))


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
        # Short examples keep the prompt small on CPU; human-written seeds are the best demonstrations.
        if len(str(q)) + len(str(a)) > 600:
            continue
        (seeds if meta.get("kind") == "seed" else others).append((str(q), str(a)))
    rng = random.Random(seed)
    rng.shuffle(seeds)
    rng.shuffle(others)
    return (seeds + others)[:n]


def context_block(question: str, hits: Sequence[Any]) -> str:
    """The user turn with retrieved passages, worded in the question's language."""
    zh = is_chinese(question)
    lines = ["根据以下参考资料回答问题。" if zh else "Answer the question using the reference passages.", ""]
    for i, hit in enumerate(hits, 1):
        lines.append(f"[{i}] ({hit.source}) {hit.text.strip()}")
    lines += ["", f"问题：{question}" if zh else f"Question: {question}"]
    return "\n".join(lines)


def build_conversation(rung: str, question: str, *, system_prompt: str, few_shot: Sequence[tuple[str, str]] = (),
                       hits: Sequence[Any] = (), labels: Sequence[str] = ()) -> list[dict[str, str]]:
    uses_adapter = rung.startswith("peft") or rung == "full"
    system = system_prompt
    if labels and not uses_adapter:
        system += ("\n只回答以下标签之一：" if is_chinese(question) else "\nAnswer with exactly one of these labels: ")
        system += ", ".join(labels)
    messages = [{"role": "system", "content": system}]
    if rung == "prompt":
        for q, a in few_shot:
            messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    user = context_block(question, hits) if rung.endswith("rag") and hits else question
    messages.append({"role": "user", "content": user})
    return messages


def fit_passages(make: Callable[[Sequence[Any]], list[dict[str, str]]], hits: Sequence[Any],
                 count_tokens: Callable[[list[dict[str, str]]], int], budget: int) -> tuple[list[dict[str, str]], int]:
    """The conversation ``make(hits)`` cut to ``budget`` tokens by dropping the lowest-ranked passages, then
    shortening the last one, so the system prompt and the question are never cut. Returns (conversation, passages
    dropped or shortened)."""
    kept = list(hits)
    conv = make(kept)
    changed = 0
    while kept and count_tokens(conv) > budget:
        if len(kept) > 1:
            kept.pop()
        else:
            last = kept[0]
            if len(last.text) < 40:
                kept.pop()
            else:
                kept[0] = _Passage(last.chunk_id, last.source, last.text[: len(last.text) // 2])
        changed += 1
        conv = make(kept)
    return conv, changed


@dataclass(frozen=True)
class _Passage:
    chunk_id: str
    source: str
    text: str


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
