"""Training commands: ``train`` and ``adapters list``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from verticalize.cli.common import ConfigOpt, SetOpt, friendly, load, out

adapters_app = typer.Typer(no_args_is_help=True, help="Inspect trained stage adapters.")


@friendly
def train_cmd(config: Optional[Path] = ConfigOpt, set_: Optional[list[str]] = SetOpt,
              run: Optional[Path] = typer.Option(None, "--run", "-r", help="Run directory (default: project.run_dir)."),
              resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint exactly."),
              force: bool = typer.Option(False, "--force", help="Train even when the memory estimate says the "
                                                                 "setting does not fit (plan.refuse_unfit=false).")
              ) -> None:
    """Train the adapter(s) of every stage on RUN/data (PEFT method from train.method)."""
    from verticalize.artifacts import RunDir
    from verticalize.train import train

    extra = ([f"project.run_dir={run}"] if run else []) + (["plan.refuse_unfit=false"] if force else [])
    cfg = load(config, set_, extra or None)
    summary = train(cfg, RunDir(cfg.project.run_dir), resume=resume)  # a TrainError is a UserError
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, one summary is enough
        return
    for s in summary["stages"]:
        m = s["metrics"]
        out.print(f"{s['name']}: {s['method']} {s['task']}, {s['trainable_params']:,} trainable "
                  f"({100 * s['trainable_share']:.3f}%), {m['steps']} steps, best val loss "
                  f"{_fmt(m.get('best_val_loss'))}, {m['tokens_per_s']} tokens/s, {m['stopped']} -> {s['path']}")


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


@adapters_app.command("list")
@friendly
def adapters_list(run: Path = typer.Argument(..., help="Run directory.")) -> None:
    """Each stage adapter with method, task, parent, trainable parameters and best validation loss."""
    from rich.table import Table

    from verticalize.train import list_adapters

    table = Table("name", "method", "task", "parent", "trainable", "share %", "best val loss", "steps", "path")
    for a in list_adapters(run):
        m = a.get("metrics", {})
        table.add_row(a["name"], a.get("method", "?"), a.get("task", "?"), a.get("parent") or "-",
                      f"{a.get('trainable_params', 0):,}", f"{100 * a.get('trainable_share', 0):.3f}",
                      _fmt(m.get("best_val_loss")), str(m.get("steps", "?")), a["path"])
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.add_typer(adapters_app, name="adapters")
