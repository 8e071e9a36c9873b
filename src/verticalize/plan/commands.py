"""What the ``estimate`` and ``advise`` commands do, as one call each (the CLI only parses and prints)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from verticalize.artifacts import RunDir
from verticalize.config import Config
from verticalize.plan.advisor import FactsError, advise
from verticalize.plan.arch import UnknownArchitectureError, resolve_arch
from verticalize.plan.calibration import calibration_path, measured_samples, record
from verticalize.plan.estimator import compare, estimate
from verticalize.plan.render import format_advice, format_comparison, format_estimate


def estimate_report(cfg: Config, *, method: str | None = None, with_comparison: bool = False,
                    tokens: int | None = None, as_json: bool = False) -> str:
    overrides: dict[str, Any] = {"method": method} if method else {}
    est = estimate(cfg, tokens=tokens, **overrides)
    table = compare(cfg, tokens=tokens) if with_comparison else []
    if as_json:
        payload: dict[str, Any] = {"estimate": est.to_dict()}
        if table:
            payload["compare"] = [e.to_dict() for e in table]
        return json.dumps(payload, ensure_ascii=False, indent=2)
    text = format_estimate(est)
    if table:
        text += "\n\ncomparison (same setting):\n" + format_comparison(table)
    return text


def calibration_report(cfg: Config, run: RunDir, as_json: bool = False) -> str:
    """Record ``run``'s measured throughput per stage against the uncalibrated estimate of the same setting."""
    def uncalibrated(method: str, precision: str | None, tokens: int) -> Any:
        overrides = {"method": method, **({"precision": precision} if precision else {})}
        return estimate(cfg, tokens=tokens, calibrated=False, **overrides)

    samples = measured_samples(run, uncalibrated)
    path = calibration_path(cfg.plan.calibration_file)
    stored = record(samples, path)
    rows = [{"key": s.key, "adapter": s.adapter, "measured_tokens_per_s": round(s.measured_tokens_per_s, 1),
             "estimated_tokens_per_s": round(s.estimated_tokens_per_s, 1), "factor": round(s.factor, 3),
             "samples_for_key": len(stored[s.key])} for s in samples]
    if as_json:
        return json.dumps({"calibration_file": str(path), "recorded": rows}, ensure_ascii=False, indent=2)
    lines = [f"recorded {len(rows)} stage(s) in {path}:"]
    lines += [f"  {r['key']} ({r['adapter']}): measured {r['measured_tokens_per_s']} tokens/s, estimated "
              f"{r['estimated_tokens_per_s']} → ×{r['factor']} ({r['samples_for_key']} sample(s) for this key)"
              for r in rows]
    return "\n".join(lines)


def load_facts(path: Path | None, flags: dict[str, Any]) -> dict[str, Any]:
    """Facts from a YAML file (optional) with command-line flags on top (flags left unset are ignored)."""
    facts: dict[str, Any] = {}
    if path is not None:
        if not path.is_file():
            raise FactsError(f"facts file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise FactsError(f"facts file {path} is not valid YAML: {e}") from e
        if not isinstance(data, dict):
            raise FactsError(f"facts file {path} must hold a mapping of facts, got {type(data).__name__}")
        facts.update(data)
    facts.update({k: v for k, v in flags.items() if v is not None})
    return facts


def load_ladder(run_dir: Path | None) -> tuple[dict[str, Any] | None, str | None]:
    """RUN/eval/ladder.json when it exists and parses; else (None, why not)."""
    if run_dir is None:
        return None, None
    path = RunDir(run_dir).ladder
    if not path.is_file():
        return None, f"no ladder results at {path}; advice from the facts only"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        return None, f"ladder results at {path} unreadable ({e}); advice from the facts only"
    return (data if isinstance(data, dict) else None), None


def facts_from_config(cfg: Config) -> dict[str, Any]:
    """Defaults a project config implies: its task form and its base model's size."""
    facts: dict[str, Any] = {"task": cfg.data.task}
    try:
        facts["model_params"] = resolve_arch(cfg.model).num_params
    except UnknownArchitectureError:
        pass
    return facts


def advice_report(facts_file: Path | None, flags: dict[str, Any], run_dir: Path | None,
                  cfg: Config | None = None, as_json: bool = False) -> str:
    facts = {**(facts_from_config(cfg) if cfg is not None else {}), **load_facts(facts_file, flags)}
    ladder, why = load_ladder(run_dir)
    advice = advise(facts, ladder)
    if why:
        advice.notes.append(why)
    if as_json:
        return json.dumps(advice.to_dict(), ensure_ascii=False, indent=2)
    return format_advice(advice)
