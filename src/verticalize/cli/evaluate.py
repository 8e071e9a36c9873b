"""CLI commands for the evaluate area: ``eval`` (the ladder and gates) and ``report`` (HTML + model card)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from verticalize.artifacts import RunDir
from verticalize.cli.common import ConfigOpt, SetOpt, friendly, load, out

GATE_FAILED_EXIT = 3
_SHOWN = ("exact_match", "f1", "rouge_l", "accuracy", "macro_f1", "recall@k", "mrr", "judge_score",
          "p50_latency_ms", "p99_latency_ms", "tokens_per_s", "trainable_params", "adapter_bytes")


def _config_for_run(run_dir: Path, config: Optional[Path], set_: Optional[list[str]]):
    # A run made by `verticalize run` carries its resolved config; an explicit --config wins.
    saved = RunDir(run_dir).config_file
    return load(config or (saved if saved.is_file() else None), set_, [f"project.run_dir={run_dir}"])


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:,.0f}"
    return "—" if v is None else f"{v:,}" if isinstance(v, int) else str(v)


def print_ladder(ladder: dict[str, Any]) -> None:
    ts = ladder["test_set"]
    metrics = [m for m in _SHOWN if any(m in r for r in ladder["rungs"].values())]
    table = Table(title=f"Ladder · {ladder['task']} · {ts['kind']} test set ({ts['n']} examples)")
    table.add_column("rung")
    for m in metrics:
        table.add_column(m, justify="right")
    for rung, values in ladder["rungs"].items():
        table.add_row(rung, *[_fmt(values.get(m)) for m in metrics])
    out.print(table)
    for rung, why in ladder.get("skipped", {}).items():
        out.print(f"skipped {rung}: {why}", highlight=False)
    for gate in ladder["gates"]:
        marks = "  ".join(f"{r}={'PASS' if res['passed'] else 'FAIL'}" for r, res in gate["results"].items())
        out.print(f"gate '{gate['goal']}' ({gate['metric']} {gate['op']} {gate['threshold']}): {marks}",
                  highlight=False)
    rec = ladder["recommendation"]
    out.print(f"recommendation: {rec['rung']} ({'passes' if rec['passes'] else 'FAILS'}) — {rec['reason']}",
              highlight=False)
    for gap in rec.get("gaps", []):
        out.print(f"  gap to '{gap['goal']}': {gap['metric']}={_fmt(gap['value'])}, needs {gap['op']} "
                  f"{gap['threshold']} (short by {_fmt(gap['gap'])})", highlight=False)


@friendly
def eval_cmd(run_dir: Path = typer.Argument(..., help="Run directory (project.run_dir)."),
             config: Optional[Path] = ConfigOpt, set_: Optional[list[str]] = SetOpt,
             test_set: Optional[Path] = typer.Option(None, "--test-set", help="Your own test questions (our JSONL "
                                                     "or SQuAD JSON); replaces the synthetic test split."),
             gate: bool = typer.Option(False, "--gate", help=f"Exit {GATE_FAILED_EXIT} when the recommended rung "
                                                             "fails a business gate (for CI).")) -> None:
    """Answer the test set with every rung (prompt, rag, peft, peft+rag, full), check the business gates."""
    from verticalize.evaluate import evaluate_run

    cfg = _config_for_run(run_dir, config, set_)
    ladder = evaluate_run(cfg, RunDir(run_dir), test_set=test_set)
    print_ladder(ladder)
    out.print(f"wrote {RunDir(run_dir).ladder}", highlight=False)
    if gate and ladder["gates"] and not ladder["recommendation"]["passes"]:
        raise typer.Exit(GATE_FAILED_EXIT)


@friendly
def report_cmd(run_dir: Path = typer.Argument(..., help="Run directory (project.run_dir).")) -> None:
    """Write RUN/report/report.html (self-contained) and RUN/report/model_card.md from the run's artifacts."""
    from verticalize.evaluate import write_report

    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory not found: {run_dir}")
    path = write_report(RunDir(run_dir))
    out.print(f"wrote {path} and {RunDir(run_dir).model_card}", highlight=False)


runs_app = typer.Typer(no_args_is_help=True, help="The versions of a run (RUN, RUN.v2, ... from run --iterate).")


@runs_app.command("list")
@friendly
def runs_list(run: Path = typer.Argument(..., help="Any version of the run family."),
              as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Every version of a run: where it came from, trained / evaluated, its best rung."""
    import json

    from verticalize.evaluate.compare import list_runs

    rows = list_runs(run)
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table(title=f"versions of {run}")
    for col in ("version", "run", "from", "feedback", "trained", "evaluated", "best rung", "best", "recommended"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["version"]), Path(r["path"]).name, Path(r["source"]).name if r["source"] else "—",
                      _fmt(r["feedback_examples"]), "yes" if r["trained"] else "no",
                      "yes" if r["evaluated"] else "no", r["best_rung"] or "—",
                      f"{r['metric']} {_fmt(r['best_value'])}" if r["best_value"] is not None else "—",
                      r["recommendation"] or "—")
    out.print(table)


@runs_app.command("compare")
@friendly
def runs_compare(a: Path = typer.Argument(..., help="The earlier version (e.g. RUN)."),
                 b: Path = typer.Argument(..., help="The later version (e.g. RUN.v2)."),
                 as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables.")) -> None:
    """Two versions' ladders rung by rung: each metric's change and whether it improved or regressed."""
    import json

    from verticalize.evaluate.compare import compare_runs

    result = compare_runs(a, b)
    if as_json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return
    if not result["same_test_set"]:
        out.print("[yellow]the two ladders were not measured on the same test set: changes are not comparable[/]")
    for rung, metrics in result["rungs"].items():
        table = Table(title=rung)
        for col in ("metric", Path(result["a"]).name, Path(result["b"]).name, "change", ""):
            table.add_column(col)
        for metric, m in metrics.items():
            mark = {"improved": "[green]improved[/]", "regressed": "[red]regressed[/]"}.get(m["change"], "same")
            table.add_row(metric, _fmt(m["a"]), _fmt(m["b"]), f"{m['delta']:+.3f}", mark)
        out.print(table)
    out.print(f"improved: {len(result['improved'])}, regressed: {len(result['regressed'])}; recommendation "
              f"{result['recommendation']['a'] or '—'} → {result['recommendation']['b'] or '—'}")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
    app.command("report")(report_cmd)
    app.add_typer(runs_app, name="runs")
