"""Business gates (seed 000, stage 1: a business goal mapped to a metric and a threshold) and the recommendation.

The recommendation is the cheapest rung that passes every gate. Cost order, cheapest first:
  prompt    nothing beyond the base model and a system prompt;
  rag       adds a retrieval index and longer prompts, but no training, and knowledge updates are a re-index;
  peft      adds a training run and a small adapter to serve; prompts stay short;
  peft+rag  pays for both;
  full      trains and stores every weight of the model.
This is seed 003's ordering of routes by cost. When no rung passes, the best rung (most gates passed, then the
primary quality metric) is named with its gap to each gate it misses.

A gate on a metric a rung did not measure fails with ``measured: false`` and the reason — e.g. ``refusal_rate``
(share of unanswerable questions answered with a refusal) when the test set holds no unanswerable question —
so a gate never passes silently. ``false_refusal_rate`` (refusals on answerable questions) is lower-is-better.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Iterable, Mapping

from verticalize.evaluate.metrics import METRICS, higher_is_better
from verticalize.rungs import RUNG_NAMES

COST_ORDER = RUNG_NAMES  # cheapest first (verticalize.rungs)
QA_ANSWERABLE_ONLY = tuple(m.name for m in METRICS.values() if m.kind == "qa")  # means over answerable questions
PRIMARY_METRIC = {"qa": "f1", "classification": "accuracy"}

# Metrics the ladder computes outside the registry, with their direction (the registry's suffix rule would call
# a "_rate" higher-is-better).
LADDER_METRICS = {"refusal_rate": True, "false_refusal_rate": False, "general_score": True,
                  "general_regression": False}
_NEEDS = {"refusal_rate": ("n_unanswerable", "the test set has no unanswerable question (add rows with "
                                             "\"answer\": [] or \"answerable\": false, or SQuAD is_impossible)"),
          "false_refusal_rate": ("n_answerable", "the test set has no answerable question")}

_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt,
        "==": lambda a, b: math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)}


def _gate_dict(gate: Any) -> dict[str, Any]:
    return gate.model_dump() if hasattr(gate, "model_dump") else dict(gate)


def gap_to_gate(value: float, op: str, threshold: float) -> float:
    """How far ``value`` is from meeting the gate, in the metric's unit (0 when it passes)."""
    if _OPS[op](value, threshold):
        return 0.0
    if op in (">=", ">"):
        return threshold - value
    if op in ("<=", "<"):
        return value - threshold
    return abs(value - threshold)


def metric_higher_is_better(name: str) -> bool:
    """Direction of a metric a gate or the recommendation compares (ladder-only metrics included)."""
    return LADDER_METRICS[name] if name in LADDER_METRICS else higher_is_better(name)


def _not_measured(metric: str, metrics: Mapping[str, Any]) -> str:
    need = _NEEDS.get(metric)
    if need is not None and metrics.get(need[0]) == 0:
        return f"metric '{metric}' not measured: {need[1]}"
    if metric in QA_ANSWERABLE_ONLY and metrics.get("n_answerable") == 0:
        return f"metric '{metric}' not measured: the test set has no answerable question"
    return f"metric '{metric}' was not measured for this rung"


def check_gates(rungs: Mapping[str, Mapping[str, Any]], gates: Iterable[Any]) -> list[dict[str, Any]]:
    """Every gate against every rung: ``[{goal, metric, op, threshold, results: {rung: {value, passed, gap}}}]``.
    A rung without the metric gets ``{value: None, passed: False, gap: None, measured: False, reason}``."""
    out = []
    for gate in gates:
        g = _gate_dict(gate)
        if g["op"] not in _OPS:
            raise ValueError(f"gate '{g['goal']}': unknown comparison '{g['op']}' (use one of {', '.join(_OPS)})")
        results = {}
        for rung, metrics in rungs.items():
            value = metrics.get(g["metric"])
            if not isinstance(value, (int, float)) or (isinstance(value, float) and math.isnan(value)):
                results[rung] = {"value": None, "passed": False, "gap": None, "measured": False,
                                 "reason": _not_measured(g["metric"], metrics)}
                continue
            passed = bool(_OPS[g["op"]](float(value), float(g["threshold"])))
            results[rung] = {"value": float(value), "passed": passed,
                             "gap": gap_to_gate(float(value), g["op"], float(g["threshold"]))}
        out.append({**g, "results": results})
    return out


def _cost_rank(rung: str) -> int:
    return COST_ORDER.index(rung) if rung in COST_ORDER else len(COST_ORDER)


def recommend(rungs: Mapping[str, Mapping[str, Any]], gate_results: list[dict[str, Any]],
              task: str = "qa") -> dict[str, Any]:
    """The cheapest rung passing all gates; else the best rung with its gaps. ``passes`` drives ``--gate``."""
    if not rungs:
        return {"rung": None, "passes": False, "reason": "no rung was evaluated", "gaps": []}
    ordered = sorted(rungs, key=_cost_rank)
    primary = PRIMARY_METRIC.get(task, "f1")
    if not gate_results:
        best = _best_by_quality(rungs, ordered, primary)
        return {"rung": best, "passes": True, "gaps": [],
                "reason": f"no gates configured: {best} has the best {primary}; add requirements.gates to choose "
                          "the cheapest rung that meets your business goals"}
    passed = {r: sum(g["results"][r]["passed"] for g in gate_results) for r in ordered}
    for rung in ordered:
        if passed[rung] == len(gate_results):
            cheaper = [r for r in ordered if _cost_rank(r) < _cost_rank(rung)]
            why = f"cheapest rung passing all {len(gate_results)} gate(s)"
            if cheaper:
                why += f"; cheaper rungs fail: {', '.join(cheaper)}"
            return {"rung": rung, "passes": True, "reason": why, "gaps": []}
    most = max(passed.values())
    candidates = [r for r in ordered if passed[r] == most]
    best = _best_by_quality(rungs, candidates, primary)
    gaps = [{"goal": g["goal"], "metric": g["metric"], "op": g["op"], "threshold": g["threshold"],
             "value": g["results"][best]["value"], "gap": g["results"][best]["gap"],
             **({"measured": False, "reason": g["results"][best].get("reason")}
                if g["results"][best].get("measured") is False else {})}
            for g in gate_results if not g["results"][best]["passed"]]
    return {"rung": best, "passes": False, "gaps": gaps,
            "reason": f"no rung passes all {len(gate_results)} gate(s); {best} passes {most} "
                      f"and has the best {primary} among those"}


def _best_by_quality(rungs: Mapping[str, Mapping[str, Any]], candidates: list[str], metric: str) -> str:
    sign = 1 if metric_higher_is_better(metric) else -1

    def score(r: str) -> tuple[float, int]:
        v = rungs[r].get(metric)
        v = float(v) if isinstance(v, (int, float)) and not math.isnan(v) else -math.inf
        return (sign * v if v != -math.inf else -math.inf, -_cost_rank(r))  # ties go to the cheaper rung

    return max(candidates, key=score)
