"""`verticalize export RUN --to FORMAT`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from verticalize.artifacts import RunDir
from verticalize.cli.common import ConfigOpt, SetOpt, friendly, load_for_run, out


@friendly
def export(run: Path = typer.Argument(..., help="Run directory with trained adapters."),
           to: str = typer.Option(..., "--to", help="merged | gguf | ollama | vllm | triton"),
           adapter: Optional[str] = typer.Option(None, help="Adapter to export (default: the last stage)."),
           out_dir: Optional[Path] = typer.Option(None, "--out", help="Default RUN/export/FORMAT."),
           config: Optional[Path] = ConfigOpt, set_: Optional[list[str]] = SetOpt) -> None:
    """Write deployment artifacts for a run and validate them."""
    from verticalize.export import export_run

    cfg = load_for_run(run, config, set_)
    result = export_run(cfg, RunDir(run), to, adapter=adapter, out=out_dir)  # an ExportError is a UserError
    out.print(json.dumps(result, indent=2, ensure_ascii=False, default=str))


def register(app: typer.Typer) -> None:
    app.command("export")(export)
