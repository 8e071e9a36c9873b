"""The run report: one self-contained HTML file (inline CSS and SVG, no scripts) and the model card.

Every input is optional: a stage that did not run (or left an unreadable file) gets a "not run" note, so a report
can be written at any point of a run.
"""

from __future__ import annotations

import json
import math
import time
from html import escape
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from verticalize.artifacts import (ADAPTER_META, TRAIN_SECONDS, AdapterMetadataError, RunDir, library_versions,
                                   read_adapter_meta)
from verticalize.errors import UserError
from verticalize.evaluate import charts
from verticalize.evaluate.compare import compare_runs
from verticalize.evaluate.model_card import write_model_card

QUALITY = {"qa": ("exact_match", "f1", "rouge_l", "judge_score"), "classification": ("accuracy", "macro_f1")}
TABLE_METRICS = ("exact_match", "f1", "rouge_l", "refusal_rate", "false_refusal_rate", "general_score",
                 "general_regression", "accuracy", "macro_f1",
                 "judge_score", "judge_win_rate", "recall@k", "mrr", "p50_latency_ms", "p95_latency_ms",
                 "p99_latency_ms", "tokens_per_s", "mean_new_tokens", "trainable_params", "adapter_bytes",
                 "training_time_s")
# Shown only when some rung has a value: refusal_rate is None when the test set has no unanswerable question.
WHEN_MEASURED = ("refusal_rate", "false_refusal_rate")
SAMPLE_SIZE = 8


def read_json(path: Path) -> Any:
    """The parsed file, or None when it is absent or unreadable (the report then says 'not run')."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _adapter_meta(adapter_dir: Path) -> dict[str, Any] | None:
    """An adapter's metadata, or None when it is unreadable (the report leaves it out)."""
    try:
        return read_adapter_meta(adapter_dir)
    except AdapterMetadataError:
        return None


def read_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    try:
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    except OSError:
        pass
    return rows


def _not_run(what: str, how: str) -> str:
    return f'<p class="note">{escape(what)}: not run ({escape(how)}).</p>'


def _num(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "—" if v is None else str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return "—" if not math.isfinite(v) else f"{v:.3f}" if abs(v) < 100 else f"{v:,.0f}"
    return escape(str(v))


def _table(headers: list[str], rows: list[list[Any]], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="num">{_num(c)}</td>' if i >= numeric_from else
                                    f"<td>{escape(str(c))}</td>" for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


# --------------------------------------------------------------------------------------------- sections
def _data_section(run: RunDir) -> str:
    manifest = read_json(run.manifest("data"))
    if not isinstance(manifest, dict):
        return "<h2>Data</h2>" + _not_run("Dataset", "verticalize data build")
    counts = manifest.get("counts") or {}
    by_kind = counts.get("by_kind") or {}
    splits = [s for s in ("train", "validation", "test") if s in by_kind] or list(by_kind)
    kinds = sorted({k for s in splits for k in (by_kind.get(s) or {})})
    html = [f"<h2>Data</h2><p>Task: <b>{escape(str(manifest.get('task', '?')))}</b>; "
            f"{_num(counts.get('chunks'))} chunks; splits {escape(json.dumps(counts.get('splits', {})))}.</p>"]
    if kinds:
        html.append(charts.stacked_bars(splits, {k: [float((by_kind.get(s) or {}).get(k, 0)) for s in splits]
                                                 for k in kinds}, "Examples by kind and split", "data-composition"))
    drops = {**{f"filter {k}": v for k, v in (counts.get("filter_drops") or {}).items()},
             **{f"dedup {k}": v for k, v in (counts.get("dedup") or {}).items()}}
    if isinstance(counts.get("decontamination"), (int, float)):
        drops["decontaminated (similar to a test question)"] = counts["decontamination"]
    html.append(_table(["dropped / filtered", "count"], [[k, v] for k, v in drops.items()]) if drops
                else '<p class="note">No filter drops recorded.</p>')
    return "".join(html)


def _kb_section(run: RunDir, ladder: dict[str, Any] | None) -> str:
    manifest = read_json(run.manifest("kb"))
    if not isinstance(manifest, dict):
        return "<h2>Knowledge base</h2>" + _not_run("Knowledge base", "verticalize kb build")
    q = manifest.get("quality") or {}
    rows = [[k, q.get(k)] for k in ("score", "effective_tokens", "density", "chunks", "documents") if k in q]
    html = ["<h2>Knowledge base</h2>", f"<p>Backend: {escape(str(manifest.get('backend', '?')))}. "
            f"Quality score (seed 003: ln(effective tokens) × information density): <b>{_num(q.get('score'))}</b></p>",
            _table(["quality", "value"], rows)]
    retrieval = (ladder or {}).get("retrieval")
    if retrieval:
        html.append(f"<p>Retrieval on the test set ({escape(retrieval['basis'])} gold): recall@{retrieval['k']} = "
                    f"<b>{_num(retrieval['recall@k'])}</b>, MRR = <b>{_num(retrieval['mrr'])}</b>.</p>")
    return "".join(html)


def _training_section(run: RunDir) -> str:
    rows = read_rows(run.train_metrics)
    adapters = [a for a in (_adapter_meta(p.parent) for p in sorted(run.adapters_dir.glob(f"*/{ADAPTER_META}")))
                if a is not None]
    if not rows and not adapters:
        return "<h2>Training</h2>" + _not_run("Training", "verticalize train")
    html = ["<h2>Training</h2>"]
    series: dict[str, list[tuple[float, float]]] = {}
    offset = 0.0
    for stage in dict.fromkeys(str(r.get("stage", "train")) for r in rows):
        mine = [r for r in rows if str(r.get("stage", "train")) == stage and isinstance(r.get("step"), (int, float))]
        for key, label in (("loss", "train"), ("val_loss", "validation")):
            pts = [(offset + r["step"], float(r[key])) for r in mine if isinstance(r.get(key), (int, float))]
            if pts:
                series[f"{stage} {label}"] = pts
        offset += max([r["step"] for r in mine] or [0])
    html.append(charts.lines(series, "Loss curves", "optimizer step (stages in order)", "loss", "loss-curve")
                if series else '<p class="note">No loss values in metrics.jsonl.</p>')
    if adapters:
        html.append(_table(["adapter", "method", "parent", "trainable params", "share", "train s", "best val loss"],
                           [[a.get("name"), a.get("method"), a.get("parent") or "—", a.get("trainable_params"),
                             a.get("trainable_share"), (a.get("metrics") or {}).get(TRAIN_SECONDS),
                             (a.get("metrics") or {}).get("best_val_loss")] for a in adapters], numeric_from=3))
        html.append(_preference_table(adapters))
    return "".join(html)


def _preference_table(adapters: list[dict[str, Any]]) -> str:
    """The preference stages (dpo, kto): how many pairs or rated answers, their share of what the run trained on,
    and what the stage did with them."""
    prefs = [a for a in adapters if a.get("task") in ("dpo", "kto")]
    if not prefs:
        return ""
    sft_rows = sum(int((a.get("inputs") or [{}])[0].get("kept") or 0) for a in adapters
                   if a.get("task") not in ("dpo", "kto"))
    rows = []
    for a in prefs:
        m = a.get("metrics") or {}
        n = m.get("pairs") if a.get("task") == "dpo" else m.get("rows")
        what = (f"{n} pairs" if a.get("task") == "dpo"
                else f"{n} rated answers ({m.get('desirable')} desirable, {m.get('undesirable')} undesirable)")
        share = n / (n + sft_rows) if isinstance(n, int) and n + sft_rows else None
        rows.append([a.get("name"), a.get("task"), what, share, m.get("steps"), m.get("stopped"),
                     m.get("validation"), m.get("reward_margin")])
    return ("<p>Preference tuning (share: of all the examples the run's stages trained on).</p>"
            + _table(["stage", "task", "trained on", "share", "steps", "stopped", "validation", "reward margin"],
                     rows, numeric_from=3))


def _version_section(run: RunDir) -> str:
    """For a version made by `run --iterate`: its ladder against the version it was iterated from, rung by rung."""
    info = read_json(run.manifest("iteration"))
    source = Path(str((info or {}).get("source") or ""))
    if not isinstance(info, dict) or not source.name:
        return ""
    html = [f"<h2>Compared with the previous version</h2><p>This is version {_num(info.get('version'))}, trained "
            f"from <b>{escape(str(source))}</b> with its approved feedback "
            f"({escape(', '.join(f'{k} {v}' for k, v in (info.get('counts') or {}).items() if v))}).</p>"]
    try:
        cmp = compare_runs(source, run.root)
    except UserError as e:
        return "".join(html) + f'<p class="note">No comparison: {escape(str(e))}</p>'
    if not cmp["same_test_set"]:
        html.append('<p class="note warning">The two versions were tested on different test sets: the changes '
                    "below compare different questions.</p>")
    html.append("<h3>On the test set</h3>" + _comparison_table(cmp))
    held = read_json(run.feedback_eval / "comparison.json")
    if isinstance(held, dict):
        html.append(f"<h3>On the {_num(held.get('questions'))} feedback questions held out of training</h3>"
                    "<p>Approved corrections that were not trained on (eval.feedback_holdout): does the new version "
                    "answer the users' new questions better, beyond the ones it was corrected on?</p>"
                    + _comparison_table(held))
    else:
        html.append('<p class="note">No feedback questions were held out of training (eval.feedback_holdout = 0): '
                    "the comparison is on the test set only.</p>")
    return "".join(html)


def _comparison_table(cmp: dict[str, Any]) -> str:
    rows = [[rung, metric, v["a"], v["b"], v["delta"], v["change"]]
            for rung, metrics in cmp["rungs"].items() for metric, v in metrics.items()]
    rec = cmp["recommendation"]
    return (_table(["rung", "metric", "previous", "this version", "Δ", "improved / regressed"], rows, numeric_from=2)
            + f"<p>Improved: {len(cmp['improved'])}; regressed: {len(cmp['regressed'])}"
            + (f" ({escape(', '.join(cmp['regressed']))})" if cmp["regressed"] else "")
            + f". Recommended rung: {escape(str(rec['a']))} → <b>{escape(str(rec['b']))}</b>.</p>")


def _ladder_section(ladder: dict[str, Any] | None) -> str:
    if not ladder or not ladder.get("rungs"):
        return "<h2>Ladder</h2>" + _not_run("Evaluation ladder", "verticalize eval RUN")
    rungs = ladder["rungs"]
    names = list(rungs)
    quality = [m for m in QUALITY.get(ladder.get("task", "qa"), ()) if any(m in r for r in rungs.values())]
    ts = ladder.get("test_set", {})
    unanswerable = ts.get("unanswerable")
    if not isinstance(unanswerable, int):  # a ladder written before the count was recorded
        unanswerable = max([int(r.get("n_unanswerable") or 0) for r in rungs.values()] or [0])
    html = ["<h2>Ladder</h2>", f"<p>Test set: <b>{escape(str(ts.get('kind')))}</b> ({_num(ts.get('n'))} examples"
            + (f", {_num(unanswerable)} of them unanswerable" if unanswerable else "")
            + f", {escape(str(ts.get('path')))}).</p>"]
    if unanswerable and ladder.get("task", "qa") == "qa":
        html.append('<p class="note">Exact match, F1 and ROUGE-L are over the answerable questions (a refusal '
                    "there scores 0); refusal rate: share of unanswerable questions answered with the refusal; "
                    "false-refusal rate: share of answerable questions refused.</p>")
    html.append(charts.grouped_bars(names, {m: [rungs[r].get(m) for r in names] for m in quality},
                                    "Quality by rung", "ladder-chart", y_max=1.0))
    shown = [m for m in TABLE_METRICS if any(m in r for r in rungs.values())
             and (m not in WHEN_MEASURED or any(_measured(r.get(m)) for r in rungs.values()))]
    html.append(_table(["rung", *shown], [[r, *[rungs[r].get(m) for m in shown]] for r in names]))
    for rung, why in (ladder.get("skipped") or {}).items():
        html.append(f'<p class="note">{escape(rung)} skipped: {escape(why)}</p>')
    form = (ladder.get("settings") or {}).get("base_form") or {}
    if form.get("note"):  # e.g. QLoRA measured on an unquantised base: the figures are not the trained model's
        html.append(f'<p class="note warning">Base model: {escape(form["note"])}</p>')
    for rung, values in rungs.items():
        if isinstance(values.get("confusion"), dict):
            html.append(_confusion(rung, values["confusion"]))
    return "".join(html)


def _measured(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _confusion(rung: str, confusion: dict[str, dict[str, int]]) -> str:
    cols = list(dict.fromkeys(c for row in confusion.values() for c in row))
    return (f"<p><b>{escape(rung)}</b> confusion matrix (rows: gold, columns: predicted)</p>"
            + _table(["gold \\ predicted", *cols], [[g, *[row.get(c, 0) for c in cols]]
                                                    for g, row in confusion.items()]))


def _gates_section(ladder: dict[str, Any] | None) -> str:
    if not ladder:
        return "<h2>Business gates</h2>" + _not_run("Gates", "verticalize eval RUN")
    rec = ladder.get("recommendation") or {}
    ok = rec.get("passes")
    html = ["<h2>Business gates</h2>",
            f'<div class="banner {"ok" if ok else "bad"}">Recommended route: <b>{escape(str(rec.get("rung")))}</b> '
            f'— {"passes" if ok else "does not pass"}. {escape(str(rec.get("reason", "")))}</div>']
    gates = ladder.get("gates") or []
    if not gates:
        html.append('<p class="note">No gates configured (requirements.gates).</p>')
        return "".join(html)
    names = list(ladder.get("rungs", {}))
    head = "".join(f"<th>{escape(r)}</th>" for r in names)
    body = []
    for g in gates:
        cells = []
        for r in names:
            res = (g.get("results") or {}).get(r, {})
            if res.get("measured") is False:
                cells.append(f'<td class="na" title="{escape(str(res.get("reason", "")))}">NOT MEASURED</td>')
                continue
            mark = "PASS" if res.get("passed") else "FAIL"
            cells.append(f'<td class="{mark.lower()}">{mark} {_num(res.get("value"))}</td>')
        body.append(f"<tr><td>{escape(str(g.get('goal')))}</td><td>{escape(str(g.get('metric')))} "
                    f"{escape(str(g.get('op')))} {_num(g.get('threshold'))}</td>{''.join(cells)}</tr>")
    html.append(f'<div class="scroll"><table><thead><tr><th>goal</th><th>gate</th>{head}</tr></thead><tbody>'
                f'{"".join(body)}</tbody></table></div>')
    for gap in rec.get("gaps") or []:
        if gap.get("measured") is False:
            html.append(f"<p>Gate “{escape(str(gap['goal']))}” ({escape(str(gap['metric']))}): not measured — "
                        f"{escape(str(gap.get('reason') or 'no value for this rung'))}.</p>")
            continue
        html.append(f"<p>Gap to “{escape(str(gap['goal']))}”: {escape(str(gap['metric']))} = {_num(gap['value'])}, "
                    f"needs {escape(str(gap['op']))} {_num(gap['threshold'])} (short by {_num(gap['gap'])}).</p>")
    return "".join(html)


def _latency_section(predictions: dict[str, list[dict[str, Any]]]) -> str:
    lat = {r: [float(x["latency_ms"]) for x in rows if isinstance(x.get("latency_ms"), (int, float))]
           for r, rows in predictions.items()}
    svg = charts.latency_strips(lat, "Latency per answer (ticks: p50, p95, p99)", "latency-chart")
    return "<h2>Latency</h2>" + (svg or _not_run("Latency", "verticalize eval RUN"))


def _samples_section(predictions: dict[str, list[dict[str, Any]]]) -> str:
    if not predictions:
        return "<h2>Sample answers</h2>" + _not_run("Predictions", "verticalize eval RUN")
    first = next(iter(predictions.values()))
    html = ["<h2>Sample answers</h2>"]
    for i, row in enumerate(first[:SAMPLE_SIZE]):
        refs = row.get("reference") or []
        parts = [f'<div class="sample"><div class="q">Q: {escape(str(row.get("question")))}</div>',
                 f"<div>Reference{' (unanswerable: a refusal is right)' if row.get('answerable') is False else ''}: "
                 f"{escape(' | '.join(map(str, refs if isinstance(refs, list) else [refs])))}</div>"]
        sources = None
        for rung, rows in predictions.items():
            if i < len(rows):
                parts.append(f"<div><b>{escape(rung)}</b>: {escape(str(rows[i].get('prediction', '')))}</div>")
                sources = sources or rows[i].get("retrieved")
        if sources:
            parts.append('<div class="src">Retrieved: ' + "; ".join(
                f"{escape(str(h.get('source')))} ({escape(str(h.get('chunk_id')))}, {_num(h.get('score'))})"
                for h in sources) + "</div>")
        html.append("".join(parts) + "</div>")
    return "".join(html)


# --------------------------------------------------------------------------------------------- entry point
def write_report(run: RunDir) -> Path:
    """Write RUN/report/report.html and RUN/report/model_card.md from whatever artifacts the run has."""
    run = run if isinstance(run, RunDir) else RunDir(run)
    ladder = read_json(run.ladder)
    ladder = ladder if isinstance(ladder, dict) else None
    predictions = {r: read_rows(run.predictions(r)) for r in (ladder or {}).get("rungs", {})}
    predictions = {r: rows for r, rows in predictions.items() if rows}
    settings = (ladder or {}).get("settings", {})
    sections = (_gates_section(ladder), _ladder_section(ladder), _version_section(run), _latency_section(predictions),
                _data_section(run), _kb_section(run, ladder), _training_section(run), _samples_section(predictions))
    body = "".join(f"<section>{s}</section>" for s in sections if s)  # a section with nothing to say is left out
    template = Template((resources.files("verticalize.evaluate") / "templates" / "report.html").read_text("utf-8"))
    css = (resources.files("verticalize.evaluate") / "templates" / "report.css").read_text("utf-8")
    html = template.substitute(
        title=escape(f"verticalize report — {run.root.name}"), css=css, body=body,
        meta=escape(f"run {run.root} · base {settings.get('base', '?')} · adapter {settings.get('adapter') or '—'}"),
        version=escape(library_versions().get("verticalize", "?")), created=time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    run.ensure("report")
    path = run.report_html
    path.write_text(html, encoding="utf-8")
    write_model_card(run, ladder, run.model_card)
    return path
