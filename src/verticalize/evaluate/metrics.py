"""Evaluation metrics, registered by name so configs, gates and reports can refer to them.

Quality metrics for question answering follow SQuAD's normalisation (lower case, no punctuation, no English
articles, collapsed spaces) but tokenise CJK text one character per token: Chinese has no spaces, so word-level
tokens would make every partially right Chinese answer score zero.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from verticalize.retrieval import mean_reciprocal_rank, recall_at_k
from verticalize.text import normalize_answer, tokens_for_match

# --------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Metric:
    """A named metric. ``kind`` says what it is computed from (and so how the ladder calls ``fn``):
    qa: fn(prediction, references) -> float per example, averaged; classification: fn(golds, preds) -> float;
    retrieval: fn(ranked_ids_per_query, gold_ids_per_query, k) -> float; cost: fn(values) -> float."""

    name: str
    kind: str
    fn: Callable[..., float]
    higher_is_better: bool
    description: str


METRICS: dict[str, Metric] = {}


def register_metric(name: str, kind: str, *, higher_is_better: bool = True,
                    description: str = "") -> Callable[[Callable[..., float]], Callable[..., float]]:
    def deco(fn: Callable[..., float]) -> Callable[..., float]:
        if name in METRICS:
            raise ValueError(f"metric '{name}' is already registered")
        METRICS[name] = Metric(name, kind, fn, higher_is_better, description or (fn.__doc__ or "").strip())
        return fn

    return deco


def get_metric(name: str) -> Metric:
    if name not in METRICS:
        raise KeyError(f"unknown metric '{name}'; known metrics: {', '.join(sorted(METRICS))}")
    return METRICS[name]


def higher_is_better(name: str) -> bool:
    """Direction of a metric by name; unregistered names (e.g. p99_latency_ms) are judged by their suffix."""
    if name in METRICS:
        return METRICS[name].higher_is_better
    return not re.search(r"(latency|_ms|_s|seconds|bytes|size|params|time|false_refusal_rate)$", name)


# --------------------------------------------------------------------------------------------- normalisation
def answer_tokens(text: str) -> list[str]:
    """Normalised tokens: one per CJK character, one per other word."""
    norm = normalize_answer(text)
    return [t for t in tokens_for_match(norm) if t.strip()] if norm else []


def _as_list(references: str | Sequence[str]) -> list[str]:
    refs = [references] if isinstance(references, str) else list(references)
    return refs or [""]


# --------------------------------------------------------------------------------------------- question answering
def _f1_tokens(pred: list[str], ref: list[str]) -> float:
    if not pred or not ref:
        return float(pred == ref)
    remaining = list(ref)
    common = 0
    for tok in pred:
        if tok in remaining:
            remaining.remove(tok)
            common += 1
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def _lcs_len(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


@register_metric("exact_match", "qa", description="1 when the normalised prediction equals a reference.")
def exact_match(prediction: str, references: str | Sequence[str]) -> float:
    pred = answer_tokens(prediction)
    return max(float(pred == answer_tokens(r)) for r in _as_list(references))


@register_metric("f1", "qa", description="Token F1 (CJK characters as tokens), best over references.")
def token_f1(prediction: str, references: str | Sequence[str]) -> float:
    pred = answer_tokens(prediction)
    return max(_f1_tokens(pred, answer_tokens(r)) for r in _as_list(references))


@register_metric("rouge_l", "qa", description="ROUGE-L F1 (longest common subsequence), CJK-aware.")
def rouge_l(prediction: str, references: str | Sequence[str]) -> float:
    pred = answer_tokens(prediction)
    best = 0.0
    for ref in _as_list(references):
        ref_toks = answer_tokens(ref)
        if not pred or not ref_toks:
            best = max(best, float(pred == ref_toks))
            continue
        lcs = _lcs_len(pred, ref_toks)
        if lcs:
            p, r = lcs / len(pred), lcs / len(ref_toks)
            best = max(best, 2 * p * r / (p + r))
    return best


# --------------------------------------------------------------------------------------------- classification
def classification_report(golds: Sequence[str], preds: Sequence[str],
                          labels: Sequence[str] | None = None) -> dict[str, Any]:
    """Accuracy, macro-F1 over the label set, per-class precision/recall/F1/support and the confusion matrix
    (``confusion[gold][pred]``). Predictions outside the label set count as wrong and appear as their own column."""
    if len(golds) != len(preds):
        raise ValueError(f"{len(golds)} gold labels but {len(preds)} predictions")
    label_set = list(labels) if labels else sorted(set(golds))
    columns = label_set + sorted({p for p in preds if p not in label_set})
    confusion = {g: {p: 0 for p in columns} for g in label_set + sorted(set(golds) - set(label_set))}
    for g, p in zip(golds, preds):
        confusion.setdefault(g, {c: 0 for c in columns})[p] += 1
    per_class: dict[str, dict[str, float]] = {}
    for label in label_set:
        tp = confusion.get(label, {}).get(label, 0)
        predicted = sum(row.get(label, 0) for row in confusion.values())
        support = sum(confusion.get(label, {}).values())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    accuracy = sum(g == p for g, p in zip(golds, preds)) / len(golds) if golds else 0.0
    macro = sum(c["f1"] for c in per_class.values()) / len(per_class) if per_class else 0.0
    return {"accuracy": accuracy, "macro_f1": macro, "per_class": per_class, "confusion": confusion,
            "labels": columns}


@register_metric("accuracy", "classification", description="Share of examples with the right label.")
def accuracy(golds: Sequence[str], preds: Sequence[str]) -> float:
    return classification_report(golds, preds)["accuracy"]


@register_metric("macro_f1", "classification", description="Mean of per-class F1 over the label set.")
def macro_f1(golds: Sequence[str], preds: Sequence[str], labels: Sequence[str] | None = None) -> float:
    return classification_report(golds, preds, labels)["macro_f1"]


# --------------------------------------------------------------------------------------------- retrieval
register_metric("recall@k", "retrieval", description="Share of the gold items found in the top k, per query "
                "(averaged over the queries).")(recall_at_k)
register_metric("mrr", "retrieval", description="Mean reciprocal rank of the first gold item.")(mean_reciprocal_rank)


# --------------------------------------------------------------------------------------------- cost
def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default), q in [0, 100]."""
    vals = sorted(values)
    if not vals:
        return float("nan")
    pos = (len(vals) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return vals[lo] + (vals[hi] - vals[lo]) * (pos - lo)


for _q in (50, 95, 99):
    register_metric(f"p{_q}_latency_ms", "cost", higher_is_better=False,
                    description=f"{_q}th percentile of per-answer latency in milliseconds.")(
        lambda values, _q=_q: percentile(values, _q))


@register_metric("tokens_per_s", "cost", description="Generated tokens per second of generation time.")
def tokens_per_second(tokens: int, seconds: float) -> float:
    return tokens / seconds if seconds > 0 else 0.0


def dir_size_bytes(path: str | Path) -> int:
    """Bytes on disk of a file or of every file under a directory (adapter size)."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else 0
