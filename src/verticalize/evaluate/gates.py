"""Business gates (seed 000, stage 1: a business goal mapped to a metric and a threshold) and the recommendation.

The recommendation is the cheapest rung that passes every gate. Cost order, cheapest first:
  prompt    nothing beyond the base model and a system prompt;
  rag       adds a retrieval index and longer prompts, but no training, and knowledge updates are a re-index;
  peft      adds a training run and a small adapter to serve; prompts stay short;
  peft+rag  pays for both;
  full      trains and stores every weight of the model.
This is seed 003's ordering of routes by cost. When no rung passes, the best rung (most gates passed, then the
primary quality metric) is named with its gap to each gate it misses.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Iterable, Mapping

from verticalize.evaluate.metrics import higher_is_better

COST_ORDER = ("prompt", "rag", "peft", "peft+rag", "full")
PRIMARY_METRIC = {"qa": "f1", "classification": "accuracy"}

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


def check_gates(rungs: Mapping[str, Mapping[str, Any]], gates: Iterable[Any]) -> list[dict[str, Any]]:
    """Every gate against every rung: ``[{goal, metric, op, threshold, results: {rung: {value, passed, gap}}}]``."""
    out = []
    for gate in gates:
        g = _gate_dict(gate)
        if g["op"] not in _OPS:
            raise ValueError(f"gate '{g['goal']}': unknown comparison '{g['op']}' (use one of {', '.join(_OPS)})")
        results = {}
        for rung, metrics in rungs.items():
            value = metrics.get(g["metric"])
            if not isinstance(value, (int, float)) or (isinstance(value, float) and math.isnan(value)):
                results[rung] = {"value": None, "passed": False, "gap": None,
                                 "reason": f"metric '{g['metric']}' was not measured for this rung"}
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
             "value": g["results"][best]["value"], "gap": g["results"][best]["gap"]}
            for g in gate_results if not g["results"][best]["passed"]]
    return {"rung": best, "passes": False, "gaps": gaps,
            "reason": f"no rung passes all {len(gate_results)} gate(s); {best} passes {most} "
                      f"and has the best {primary} among those"}


def _best_by_quality(rungs: Mapping[str, Mapping[str, Any]], candidates: list[str], metric: str) -> str:
    sign = 1 if higher_is_better(metric) else -1

    def score(r: str) -> tuple[float, int]:
        v = rungs[r].get(metric)
        v = float(v) if isinstance(v, (int, float)) and not math.isnan(v) else -math.inf
        return (sign * v if v != -math.inf else -math.inf, -_cost_rank(r))  # ties go to the cheaper rung

    return max(candidates, key=score)
