"""Statistics of a built dataset: counts by kind/source/split, length distributions, filter drops, KB quality.

Lengths are given in characters and in approximate tokens: one token per CJK character and one per run of
Latin letters/digits or per other symbol. That tracks real BPE counts closely enough to size ``max_seq_len``
without loading a tokenizer.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from verticalize.artifacts import RunDir, read_jsonl
from verticalize.data.schema import SPLITS, answer_of, kind_of, question_of
from verticalize.text import CJK_RANGES

_TOKEN = re.compile(f"[{CJK_RANGES}]|[A-Za-z0-9_]+|[^\\s]")


def approx_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


def distribution(values: list[int]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    v = sorted(values)

    def pct(p: float) -> int:
        return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]

    return {"n": len(v), "min": v[0], "p50": pct(50), "p90": pct(90), "p99": pct(99), "max": v[-1],
            "mean": round(sum(v) / len(v), 1)}


def _kb_quality(run: RunDir) -> Any:
    """The knowledge-base quality score from RUN/kb/manifest.json (key "quality"), or None; read defensively."""
    path = run.manifest("kb")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    quality = manifest.get("quality") if isinstance(manifest, dict) else None
    if quality is None and isinstance(manifest, dict):
        quality = (manifest.get("counts") or {}).get("quality")
    return quality


def dataset_stats(run: str | Path | RunDir) -> dict[str, Any]:
    """Everything `verticalize data stats` prints, as a dict."""
    run = run if isinstance(run, RunDir) else RunDir(run)
    data_dir = run.stage("data")
    present = [s for s in SPLITS if run.dataset_split(s).is_file()]
    if not present:
        raise FileNotFoundError(f"no dataset in {data_dir}: run `verticalize data build` first")
    by_split: dict[str, int] = {}
    by_kind: dict[str, Counter] = {}
    by_source: Counter = Counter()
    by_generator: Counter = Counter()
    labels: Counter = Counter()
    lengths: dict[str, list[int]] = {"question_chars": [], "answer_chars": [], "question_tokens": [],
                                     "answer_tokens": [], "example_tokens": []}
    for split in present:
        kinds: Counter = Counter()
        n = 0
        for ex in read_jsonl(run.dataset_split(split)):
            n += 1
            meta = ex.get("meta") or {}
            kinds[kind_of(ex)] += 1
            by_source[str(meta.get("source") or "(none)")] += 1
            by_generator[str(meta.get("generator") or "(unknown)")] += 1
            if meta.get("task") == "classification":
                labels[str(meta.get("label"))] += 1
            q, a = question_of(ex), answer_of(ex)
            qt, at = approx_tokens(q), approx_tokens(a)
            lengths["question_chars"].append(len(q))
            lengths["answer_chars"].append(len(a))
            lengths["question_tokens"].append(qt)
            lengths["answer_tokens"].append(at)
            lengths["example_tokens"].append(sum(approx_tokens(m.get("content", "")) for m in ex["messages"]))
        by_split[split] = n
        by_kind[split] = kinds
    manifest: dict[str, Any] = {}
    if (data_dir / "manifest.json").is_file():
        manifest = json.loads((data_dir / "manifest.json").read_text(encoding="utf-8"))
    counts = manifest.get("counts") or {}
    return {
        "run": str(run.root),
        "splits": by_split,
        "by_kind": {s: dict(c) for s, c in by_kind.items()},
        "by_source": dict(by_source.most_common()),
        "by_generator": dict(by_generator.most_common()),
        "labels": dict(labels.most_common()),
        "lengths": {k: distribution(v) for k, v in lengths.items()},
        "filter_drops": counts.get("filter_drops", {}),
        "dedup": counts.get("dedup", {}),
        "decontamination": counts.get("decontamination", {}),
        "seed_problems": (manifest.get("seed_import") or {}).get("problems_total", 0),
        "teacher_usage": counts.get("teacher_usage", {}),
        "kb_quality": _kb_quality(run),
    }
