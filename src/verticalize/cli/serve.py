"""Serving commands: `serve RUN` and `feedback export RUN`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from verticalize.artifacts import RunDir
from verticalize.cli.common import ConfigOpt, SetOpt, friendly, load_for_run, out

feedback_app = typer.Typer(no_args_is_help=True, help="Feedback collected by the gateway.")


@friendly
def serve(run: Path = typer.Argument(..., help="Run directory (its adapters and knowledge base are served)."),
          config: Optional[Path] = ConfigOpt, set_: Optional[list[str]] = SetOpt,
          host: Optional[str] = typer.Option(None, help="Bind address (default serve.host)."),
          port: Optional[int] = typer.Option(None, help="Port (default serve.port).")) -> None:
    """Start the OpenAI-compatible gateway for a run: the base and every adapter, RAG, metrics, feedback."""
    from verticalize.serve import serve_run

    extra = [*(set_ or []), *([f"serve.host={host}"] if host else []), *([f"serve.port={port}"] if port else [])]
    cfg = load_for_run(run, config, extra)
    serve_run(cfg, RunDir(run))


@feedback_app.command("export")
@friendly
def feedback_export(run: Path = typer.Argument(..., help="Run directory that was served."),
                    out_path: Optional[Path] = typer.Option(None, "--out", help="Default RUN/feedback/seed.jsonl."),
                    min_rating: int = typer.Option(1, help="Uncorrected answers need at least this rating.")) -> None:
    """Turn rated and corrected answers into seed examples for `verticalize run --iterate`."""
    from verticalize.serve import export_feedback

    counts = export_feedback(RunDir(run), out_path, min_rating=min_rating)
    out.print(f"exported {counts['exported']} examples ({counts['corrected']} corrected, {counts['approved']} "
              f"approved; {counts['rejected_without_correction']} rejected without a correction left out) "
              f"to {counts['path']}")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.add_typer(feedback_app, name="feedback")
