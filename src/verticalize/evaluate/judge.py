"""The optional LLM judge: a teacher model scores answers against the reference with a fixed rubric.

Temperature 0 and a fixed rubric make scores repeatable. Pairwise comparisons are asked in both answer orders
and count as a win only when both orders agree, which cancels the judge's preference for the first position.
"""

from __future__ import annotations

import re
from typing import Any, Protocol, Sequence

RUBRIC = (
    "You grade answers to domain questions. Compare the candidate answer with the reference answer.\n"
    "Score 1-5: 5 = same facts as the reference, complete; 4 = correct, minor omission; 3 = partly correct; "
    "2 = mostly wrong or unsupported; 1 = wrong, empty or off-topic. Language and wording do not matter, "
    "facts do.\nReply exactly in two lines:\nSCORE: <1-5>\nREASON: <one sentence>"
)
PAIR_RUBRIC = (
    "You compare two candidate answers to a domain question against the reference answer. Prefer the answer "
    "whose facts match the reference; wording and length do not matter.\nReply exactly in two lines:\n"
    "WINNER: A, B or TIE\nREASON: <one sentence>"
)


class ChatClient(Protocol):
    def chat(self, messages: list[dict], *, temperature: float | None = None) -> str: ...


def _field(reply: str, name: str) -> str | None:
    m = re.search(rf"{name}\s*[:：]\s*(.+)", reply, flags=re.IGNORECASE)
    return m.group(1).strip() if m else None


def judge_answer(client: ChatClient, question: str, reference: str, prediction: str) -> dict[str, Any]:
    """``{"score": 1..5 or None, "reason": str}``; an unreadable reply keeps the raw text as the reason."""
    user = f"Question: {question}\nReference answer: {reference}\nCandidate answer: {prediction}"
    reply = client.chat([{"role": "system", "content": RUBRIC}, {"role": "user", "content": user}], temperature=0.0)
    raw = _field(reply, "SCORE")
    m = re.match(r"[1-5]", raw or "")
    return {"score": int(m.group(0)) if m else None, "reason": _field(reply, "REASON") or reply.strip()[:300]}


def _winner(client: ChatClient, question: str, reference: str, first: str, second: str) -> tuple[str, str]:
    user = (f"Question: {question}\nReference answer: {reference}\nAnswer A: {first}\nAnswer B: {second}")
    reply = client.chat([{"role": "system", "content": PAIR_RUBRIC}, {"role": "user", "content": user}],
                        temperature=0.0)
    w = (_field(reply, "WINNER") or "").upper()
    return ("A" if w.startswith("A") else "B" if w.startswith("B") else "TIE"), (_field(reply, "REASON") or "")


def judge_pair(client: ChatClient, question: str, reference: str, answer: str, baseline: str) -> dict[str, Any]:
    """``answer`` against ``baseline`` in both orders: win/loss only when both orders agree, else tie."""
    w1, r1 = _winner(client, question, reference, answer, baseline)
    w2, r2 = _winner(client, question, reference, baseline, answer)
    if w1 == "A" and w2 == "B":
        outcome = "win"
    elif w1 == "B" and w2 == "A":
        outcome = "loss"
    else:
        outcome = "tie"
    return {"outcome": outcome, "orders": [w1, w2], "reasons": [r1, r2]}


def judge_rung(client: ChatClient, rows: Sequence[dict[str, Any]],
               baseline_rows: Sequence[dict[str, Any]] | None = None) -> dict[str, float]:
    """Adds ``judge`` (and ``judge_pair``) to each prediction row in place; returns the rung's judge metrics:
    judge_score (mean score scaled to 0..1) and, against a baseline rung, judge_win_rate (ties count half)."""
    scores = []
    for row in rows:
        verdict = judge_answer(client, row["question"], row["reference"][0], row["prediction"])
        row["judge"] = verdict
        if verdict["score"] is not None:
            scores.append((verdict["score"] - 1) / 4)
    metrics = {"judge_score": sum(scores) / len(scores) if scores else float("nan")}
    if baseline_rows is not None:
        points = []
        for row, base in zip(rows, baseline_rows):
            pair = judge_pair(client, row["question"], row["reference"][0], row["prediction"], base["prediction"])
            row["judge_pair"] = pair
            points.append({"win": 1.0, "tie": 0.5, "loss": 0.0}[pair["outcome"]])
        metrics["judge_win_rate"] = sum(points) / len(points) if points else float("nan")
    return metrics
