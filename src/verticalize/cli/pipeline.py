"""The main job (`run`), the embedded default (`demo`)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from verticalize.cli.common import ConfigOpt, SetOpt, console, friendly, load, out
from verticalize.errors import UserError

# The metrics shown in the terminal summary, in this order, when a rung has them.
SUMMARY_METRICS = ("exact_match", "f1", "rouge_l", "accuracy", "macro_f1", "p50_latency_ms", "p99_latency_ms",
                   "tokens_per_s")


def _progress(stage: str, status: str) -> None:
    console.print(f"[bold cyan]{stage:>7}[/] {status}")


def ladder_table(ladder: dict[str, Any], title: str = "ladder") -> Table:
    rungs: dict[str, dict[str, Any]] = ladder.get("rungs", {})
    metrics = [m for m in SUMMARY_METRICS if any(m in r for r in rungs.values())]
    table = Table(title=title)
    table.add_column("rung")
    for m in metrics:
        table.add_column(m, justify="right")
    table.add_column("gates")
    gates = ladder.get("gates") or ladder.get("gate_results") or []
    for name, row in rungs.items():
        cells = [f"{row[m]:.3f}" if isinstance(row.get(m), float) else str(row.get(m, "")) for m in metrics]
        passed = [g.get("results", {}).get(name, {}).get("passed") for g in gates]
        cells.append(f"{sum(1 for p in passed if p)}/{len(passed)}" if passed else "")
        table.add_row(name, *cells)
    return table


def print_summary(result: Any) -> None:
    stages = Table(title="stages")
    for col in ("stage", "status", "seconds", "note"):
        stages.add_column(col)
    for s in result.stages:
        stages.add_row(s.name, s.status, f"{s.seconds:.1f}" if s.seconds else "", s.note)
    out.print(stages)
    if result.ladder:
        out.print(ladder_table(result.ladder))
        rec = result.ladder.get("recommendation") or {}
        if rec:
            out.print(f"[bold]recommendation:[/] {rec.get('rung', '?')} — {rec.get('reason', '')}")
    if result.report:
        out.print(f"report: {result.report}")


@friendly
def run(config: Path = typer.Argument(..., help="Project YAML."), set_: Optional[list[str]] = SetOpt,
        force: bool = typer.Option(False, help="Rerun every stage even when cached."),
        strict: bool = typer.Option(False, help="Fail on any skipped input instead of reporting it."),
        test_set: Optional[Path] = typer.Option(None, help="Human test set replacing the synthetic test split."),
        iterate: bool = typer.Option(False, help="Retrain on the APPROVED feedback into a new version of the run "
                                                 "(RUN.v2, RUN.v3, ...); the served run is left as it is."),
        ) -> None:
    """The main job: ingest → knowledge base → dataset → train → evaluate → report."""
    from verticalize.pipeline import run_iteration, run_pipeline

    cfg = load(config, set_)
    kwargs: dict[str, Any] = dict(force=force, strict=strict, test_set=str(test_set) if test_set else None,
                                  progress=_progress)
    if not iterate:
        print_summary(run_pipeline(cfg, **kwargs))
        return
    result, it = run_iteration(cfg, **kwargs)
    c = it.counts
    out.print(f"iteration: {it.source.root} → {it.target.root} (version {it.version}"
              f"{', resumed' if it.resumed else ''}); seed data: {c.get('exported', 0)} approved feedback examples "
              f"({c.get('corrected', 0)} corrected, {c.get('as_answered', 0)} as answered; {c.get('pending', 0)} "
              f"pending and {c.get('rejected', 0)} rejected left out)")
    print_summary(result)
    out.print(f"serve it with `verticalize serve {it.target.root}`, or switch a running gateway to it with "
              f"POST /admin/reload {{\"run\": \"{it.target.root}\"}}")


def demo_config_path(task: str) -> Path:
    name = "demo.yaml" if task == "qa" else "classification.yaml"
    path = Path(str(resources.files("verticalize") / "examples" / "demo" / name))
    if not path.is_file():
        raise UserError(f"the demo project {path} is missing from the installed package; reinstall verticalize")
    return path


@friendly
def demo(task: str = typer.Option("qa", help="qa (bank rules + runbook) or classification (support tickets)."),
         run_dir: Path = typer.Option(Path("runs/demo"), help="Where the demo run is written."),
         set_: Optional[list[str]] = SetOpt,
         force: bool = typer.Option(False, help="Rerun every stage even when cached.")) -> None:
    """The embedded default: a fictional bank's rules + IT runbook on SmolLM2 with LoRA, end to end."""
    from verticalize.pipeline import run_pipeline

    if task not in ("qa", "classification"):
        raise UserError(f"--task must be qa or classification, got '{task}'")
    config = demo_config_path(task)
    if task == "qa":
        cfg = load(config, [f"project.run_dir={run_dir.resolve()}", *(set_ or [])])
        print_summary(run_pipeline(cfg, force=force, progress=_progress))
        return
    # The seeds' ticket-classification case: prefix tuning against LoRA on the same data.
    ladders = {}
    for method in ("prefix", "lora"):
        console.print(f"[bold]classification with {method}[/]")
        cfg = load(config, [f"project.run_dir={run_dir.resolve()}-{method}", f"train.method={method}",
                            *(set_ or [])])
        result = run_pipeline(cfg, force=force, progress=_progress)
        print_summary(result)
        ladders[method] = result.ladder or {}
    out.print(ladder_table({"rungs": {f"{m}:{r}": v for m, lad in ladders.items()
                                      for r, v in lad.get("rungs", {}).items()}}, title="prefix vs lora"))


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("demo")(demo)
