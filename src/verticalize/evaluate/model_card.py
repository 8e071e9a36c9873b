"""The model card (Markdown): base, method, data, metrics, limits and licence, from the run's artifacts."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from verticalize.artifacts import AdapterMetadataError, RunDir, read_adapter_meta
from verticalize.models.catalog import get_spec

_CARD_METRICS = ("exact_match", "f1", "rouge_l", "refusal_rate", "false_refusal_rate", "accuracy", "macro_f1",
                 "judge_score", "recall@k", "p50_latency_ms", "p99_latency_ms", "tokens_per_s")
_WHEN_MEASURED = ("refusal_rate", "false_refusal_rate")  # None when the test set has no such question


def _read(path: Path, loader: Any = json.loads) -> Any:
    try:
        return loader(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return None


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "—" if not math.isfinite(v) else f"{v:.3f}" if abs(v) < 100 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return "—" if v is None else str(v)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _gate_mark(res: dict[str, Any]) -> str:
    return "not measured" if res.get("measured") is False else "pass" if res.get("passed") else "fail"


def _licence(base: str) -> str:
    spec = get_spec(base)
    if spec is None:
        return (f"Unknown for base `{base}` (not in the catalog): check the base model's licence before any use; "
                "the adapter inherits its conditions.")
    use = "allowed" if spec.commercial_use else "not allowed"
    return f"{spec.licence} (base `{spec.hf_id}`; commercial use {use}). {spec.licence_note}"


def _last_adapter(run: RunDir, name: str | None) -> dict[str, Any]:
    if name:
        try:
            return read_adapter_meta(run.adapter_dir(name)) or {}
        except AdapterMetadataError:  # unreadable: the card says what it can without it
            pass
    return {}


def _base_form(form: dict[str, Any] | None) -> str:
    if not form:
        return "not recorded"
    return form.get("note") or f"{form.get('loaded')}, as trained"


def model_card_text(run: RunDir, ladder: dict[str, Any] | None) -> str:
    cfg = _read(run.config_file, yaml.safe_load) or {}
    settings = (ladder or {}).get("settings", {})
    base = settings.get("base") or (cfg.get("model") or {}).get("base") or "unknown"
    project = (cfg.get("project") or {}).get("name") or run.root.name
    adapter = _last_adapter(run, settings.get("adapter"))
    lines = [f"# Model card — {project}", "", "## Model", "",
             f"- Base model: `{base}`",
             f"- Adaptation: {adapter.get('method') or (cfg.get('train') or {}).get('method') or 'none trained'}"
             + (f", adapter `{adapter['name']}`" if adapter.get("name") else ""),
             f"- Layered stages: {' → '.join(settings.get('adapter_lineage') or []) or '—'}",
             f"- Base as measured: {_base_form(settings.get('base_form'))}",
             f"- Trainable parameters: {_fmt(adapter.get('trainable_params'))} of {_fmt(adapter.get('total_params'))}",
             f"- Files: `{run.adapters_dir}` (PEFT format: adapter_config.json + adapter_model.safetensors)", ""]
    lines += ["## Licence", "", _licence(base), ""]
    data = _read(run.manifest("data")) or {}
    counts = data.get("counts") or {}
    lines += ["## Training data", ""]
    if counts:
        lines.append(f"- Task: {data.get('task', '?')}; splits: {json.dumps(counts.get('splits', {}))}")
        lines.append(f"- By kind (seed = human-written, synthetic = distilled from the documents, augmented): "
                     f"{json.dumps(counts.get('by_kind', {}), ensure_ascii=False)}")
        lines.append(f"- Filter drops: {json.dumps(counts.get('filter_drops', {}), ensure_ascii=False)}")
    else:
        lines.append("Not recorded (the data stage did not run in this run directory).")
    lines.append("")
    lines += ["## Evaluation", ""]
    if ladder and ladder.get("rungs"):
        ts = ladder["test_set"]
        unanswerable = ts.get("unanswerable") or max(
            [int(r.get("n_unanswerable") or 0) for r in ladder["rungs"].values()] or [0])
        lines.append(f"Test set: **{ts['kind']}**, {ts['n']} examples"
                     + (f", {unanswerable} of them unanswerable" if unanswerable else "") + f" (`{ts['path']}`).")
        if unanswerable:
            lines.append("Exact match, F1 and ROUGE-L are over the answerable questions (a refusal there scores 0); "
                         "refusal_rate is the share of unanswerable questions answered with the refusal, "
                         "false_refusal_rate the share of answerable questions refused.")
        lines.append("")
        shown = [m for m in _CARD_METRICS if any(m in r for r in ladder["rungs"].values())
                 and (m not in _WHEN_MEASURED or any(_is_number(r.get(m)) for r in ladder["rungs"].values()))]
        lines.append("| rung | " + " | ".join(shown) + " |")
        lines.append("|---|" + "---:|" * len(shown))
        for rung, m in ladder["rungs"].items():
            lines.append(f"| {rung} | " + " | ".join(_fmt(m.get(k)) for k in shown) + " |")
        lines.append("")
        for g in ladder.get("gates") or []:
            marks = ", ".join(f"{r} {_gate_mark(res)}" for r, res in g["results"].items())
            lines.append(f"- Gate “{g['goal']}” ({g['metric']} {g['op']} {g['threshold']}): {marks}")
        rec = ladder.get("recommendation") or {}
        lines += [f"- Recommendation: **{rec.get('rung')}** ({'passes' if rec.get('passes') else 'fails'}): "
                  f"{rec.get('reason', '')}", ""]
    else:
        lines += ["Not evaluated yet (`verticalize eval RUN`).", ""]
    lines += ["## Limits", ""] + [f"- {x}" for x in _limits(ladder)] + [""]
    return "\n".join(lines)


def _limits(ladder: dict[str, Any] | None) -> list[str]:
    out = []
    if ladder:
        n = ladder["test_set"]["n"]
        kind = ladder["test_set"]["kind"]
        if kind == "synthetic":
            out.append("The test set was generated from the same documents as the training data; scores on "
                       "real user questions are usually lower. Add a human-written test set (--test-set).")
        if n:
            out.append(f"{n} test examples: differences between rungs smaller than about {1 / math.sqrt(n):.2f} "
                       "(1/√n) are within noise.")
        if ladder.get("settings", {}).get("batch_size", 1) > 1:
            out.append("Latencies were measured with batched generation on the evaluation machine; measure the "
                       "serving path for production latency.")
    out.append("Answers about facts that changed after training need the retrieval (RAG) rungs; the adapter does "
               "not update itself.")
    out.append("Generated answers can be wrong or incomplete; keep a human in the loop for consequential decisions.")
    return out


def write_model_card(run: RunDir, ladder: dict[str, Any] | None, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(model_card_text(run, ladder), encoding="utf-8")
    return path
