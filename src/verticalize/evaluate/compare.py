"""Runs as a family of versions: list them, and compare two ladders rung by rung.

``verticalize run --iterate`` writes RUN.v2, RUN.v3, ... beside RUN (artifacts.run_family). `list_runs` says for
each version where it came from, whether it is trained and evaluated, and its best rung; `compare_runs` puts two
versions' ladders side by side — every metric both measured, its change, and whether that change is an
improvement in the metric's own direction (lower latency is better, lower general_regression is better). The two
ladders are comparable only on the same test set: the comparison says whether they were (path, size and the test
file's fingerprint).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from verticalize.artifacts import RunDir, file_fingerprint, run_versions
from verticalize.errors import UserError
from verticalize.evaluate.gates import PRIMARY_METRIC, metric_higher_is_better

# Metrics a comparison reports (when both ladders have them), quality first, then cost.
COMPARED = ("f1", "exact_match", "rouge_l", "accuracy", "macro_f1", "refusal_rate", "false_refusal_rate",
            "general_score", "general_regression", "judge_score", "p50_latency_ms", "p99_latency_ms", "tokens_per_s")
TOLERANCE = 1e-9  # a change smaller than this is no change


def _ladder(run: RunDir) -> dict[str, Any] | None:
    try:
        data = json.loads(run.ladder.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # absent or unreadable: not evaluated
        return None
    return data if isinstance(data, dict) else None


def _iteration(run: RunDir) -> dict[str, Any]:
    path = run.manifest("iteration")
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _best(ladder: dict[str, Any]) -> tuple[str | None, float | None]:
    metric = PRIMARY_METRIC.get(ladder.get("task", "qa"), "f1")
    scored = [(r, m.get(metric)) for r, m in (ladder.get("rungs") or {}).items()
              if isinstance(m.get(metric), (int, float))]
    return max(scored, key=lambda x: x[1]) if scored else (None, None)


def list_runs(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every version of ``run_dir``'s family, oldest first."""
    versions = run_versions(run_dir)
    if not versions:
        raise UserError(f"no run at {run_dir}")
    out = []
    for version, path in versions:
        run = RunDir(path)
        ladder = _ladder(run)
        rung, value = _best(ladder) if ladder else (None, None)
        info = _iteration(run)
        out.append({"version": version, "path": str(path), "source": info.get("source"),
                    "feedback_examples": (info.get("counts") or {}).get("exported"),
                    "trained": run.manifest("train").is_file(), "evaluated": ladder is not None,
                    "best_rung": rung, "best_value": value,
                    "metric": PRIMARY_METRIC.get((ladder or {}).get("task", "qa"), "f1"),
                    "recommendation": ((ladder or {}).get("recommendation") or {}).get("rung")})
    return out


def _test_set(ladder: dict[str, Any]) -> dict[str, Any]:
    ts = dict(ladder.get("test_set") or {})
    path = Path(str(ts.get("path") or ""))
    ts["fingerprint"] = file_fingerprint(path) if path.is_file() else None
    return ts


def compare_runs(a_dir: str | Path, b_dir: str | Path) -> dict[str, Any]:
    """``b`` against ``a`` (typically the new version against the one it was iterated from)."""
    a, b = RunDir(a_dir), RunDir(b_dir)
    la, lb = _ladder(a), _ladder(b)
    missing = [str(r.ladder) for r, lad in ((a, la), (b, lb)) if lad is None]
    if missing:
        raise UserError(f"no ladder at {', '.join(missing)}: evaluate first (`verticalize eval RUN`)")
    return {"a": str(a.root), "b": str(b.root), **compare_ladders(la, lb)}


def compare_ladders(la: dict[str, Any], lb: dict[str, Any]) -> dict[str, Any]:
    """Ladder ``lb`` against ladder ``la``, rung by rung: every metric both measured, its change, its direction."""
    ta, tb = _test_set(la), _test_set(lb)
    same = (ta.get("n") == tb.get("n") and ta.get("fingerprint") is not None
            and ta.get("fingerprint") == tb.get("fingerprint"))
    rungs: dict[str, dict[str, Any]] = {}
    improved, regressed = [], []
    for rung in [r for r in la["rungs"] if r in lb["rungs"]]:
        ma, mb = la["rungs"][rung], lb["rungs"][rung]
        row = {}
        for metric in COMPARED:
            va, vb = ma.get(metric), mb.get(metric)
            if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (va, vb)):
                continue
            delta = vb - va
            better = (delta > TOLERANCE) if metric_higher_is_better(metric) else (delta < -TOLERANCE)
            worse = (delta < -TOLERANCE) if metric_higher_is_better(metric) else (delta > TOLERANCE)
            row[metric] = {"a": va, "b": vb, "delta": delta,
                           "change": "improved" if better else "regressed" if worse else "same"}
            (improved if better else regressed if worse else []).append(f"{rung}:{metric}")
        rungs[rung] = row
    return {"same_test_set": same, "test_sets": {"a": ta, "b": tb},
            "rungs": rungs, "only_in_a": [r for r in la["rungs"] if r not in lb["rungs"]],
            "only_in_b": [r for r in lb["rungs"] if r not in la["rungs"]], "improved": improved,
            "regressed": regressed,
            "recommendation": {"a": (la.get("recommendation") or {}).get("rung"),
                               "b": (lb.get("recommendation") or {}).get("rung")}}
