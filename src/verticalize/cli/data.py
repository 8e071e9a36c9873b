"""Dataset commands: ``data build``, ``data stats``, ``data export``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from verticalize.cli.common import ConfigOpt, SetOpt, console, friendly, load, out
from verticalize.errors import UserError

data_app = typer.Typer(no_args_is_help=True, help="Build, inspect and export the training dataset.")

RunOpt = typer.Option(None, "--run", "-r", help="Run directory (default: project.run_dir).")


@data_app.command("build")
@friendly
def build(config: Optional[Path] = ConfigOpt, set_: Optional[list[str]] = SetOpt,
          run: Optional[Path] = RunOpt,
          strict: bool = typer.Option(False, "--strict", help="Fail on any refused seed/test row.")) -> None:
    """Distil chunks into Q/A pairs, import seed data, split by document, decontaminate; write RUN/data/."""
    from verticalize.artifacts import RunDir
    from verticalize.data import build_dataset

    cfg = load(config, set_)
    if run:  # assigned, not parsed as an override: a folder named like a date or number stays a path
        cfg.project.run_dir = str(run)
    manifest = build_dataset(cfg, RunDir(cfg.project.run_dir), strict=strict)
    counts = manifest["counts"]
    problems = manifest["seed_import"]["problems"]
    for line in problems[:20]:
        console.print(f"[yellow]refused seed row[/] {line}", highlight=False)
    if manifest["seed_import"]["problems_total"] > 20:
        console.print(f"... and {manifest['seed_import']['problems_total'] - 20} more (see the manifest)")
    splits = ", ".join(f"{k} {v}" for k, v in counts["splits"].items())
    out.print(f"dataset ({manifest['task']}): {splits}; test from {manifest['test_source']}; "
              f"decontaminated {counts['decontamination']}; dropped {counts['filter_drops'] or 'none'}; "
              f"duplicates {counts['dedup'] or 'none'}", highlight=False)
    out.print(f"wrote {Path(cfg.project.run_dir) / 'data'}")


def _table(title: str, rows: dict[str, Any], head: tuple[str, str] = ("", "count")) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(head[0])
    table.add_column(head[1], justify="right")
    for k, v in rows.items():
        table.add_row(str(k), str(v))
    return table


@data_app.command("stats")
@friendly
def stats(run: Path = typer.Argument(..., help="Run directory."),
          as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON.")) -> None:
    """Counts by kind, source and split; length distribution; filter drops; knowledge-base score."""
    from verticalize.data import dataset_stats

    s = dataset_stats(run)
    if as_json:
        print(json.dumps(s, ensure_ascii=False, indent=2))
        return
    kinds = sorted({k for c in s["by_kind"].values() for k in c})
    table = Table(title="examples by split and kind", title_justify="left")
    for col in ["split", *kinds, "total"]:
        table.add_column(col, justify="left" if col == "split" else "right")
    for split, n in s["splits"].items():
        table.add_row(split, *(str(s["by_kind"][split].get(k, 0)) for k in kinds), str(n))
    out.print(table)
    top_sources = dict(list(s["by_source"].items())[:15])
    out.print(_table("by source (top 15)", top_sources, ("source", "examples")))
    out.print(_table("by generator", s["by_generator"], ("generator", "examples")))
    if s["labels"]:
        out.print(_table("labels", s["labels"], ("label", "examples")))
    lengths = Table(title="length distribution (tokens ≈ CJK characters + words)", title_justify="left")
    for col in ("measure", "p50", "p90", "p99", "max", "mean"):
        lengths.add_column(col, justify="left" if col == "measure" else "right")
    for name, d in s["lengths"].items():
        lengths.add_row(name, *(str(d.get(k, "-")) for k in ("p50", "p90", "p99", "max", "mean")))
    out.print(lengths)
    drops = {**s["filter_drops"], **{f"dedup:{k}": v for k, v in s["dedup"].items()},
             **{f"decontamination:{k}": v for k, v in s["decontamination"].items()}}
    out.print(_table("dropped", drops or {"(none)": 0}, ("reason", "examples")))
    if s["teacher_usage"]:
        out.print(f"teacher usage: {json.dumps(s['teacher_usage'])}", highlight=False)
    quality = s["kb_quality"]
    out.print(f"knowledge-base quality: {json.dumps(quality) if quality is not None else 'n/a (no RUN/kb manifest)'}",
              highlight=False)


@data_app.command("export")
@friendly
def export(run: Path = typer.Argument(..., help="Run directory."),
           fmt: str = typer.Option(..., "--format", "-f", help="alpaca | sharegpt | llamafactory"),
           out_dir: Path = typer.Option(..., "--out", "-o", help="Output directory."),
           system: bool = typer.Option(True, help="Include the project's system prompt in each row.")) -> None:
    """Export the dataset for other tools (LLaMA-Factory: sharegpt files + dataset_info.json)."""
    from verticalize.artifacts import RunDir, read_manifest
    from verticalize.data import FORMATS, export_dataset

    if fmt not in FORMATS:
        raise UserError(f"unknown format '{fmt}'; choose one of {', '.join(FORMATS)}")
    data_dir = RunDir(run).stage("data")
    prompt = None
    if system and RunDir(run).manifest("data").is_file():
        prompt = read_manifest(data_dir).get("system_prompt")
    result = export_dataset(data_dir, fmt, out_dir, system_prompt=prompt)
    rows = ", ".join(f"{k} {v}" for k, v in result["rows"].items())
    out.print(f"exported {fmt}: {rows} -> {out_dir}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
