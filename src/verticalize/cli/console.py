"""`verticalize console`: the web app (projects, runs, ladder, playground, feedback review)."""

from __future__ import annotations

from pathlib import Path

import typer

from verticalize.cli.common import friendly


@friendly
def console_cmd(root: Path = typer.Option(Path("console-projects"), "--root", help="Folder of the console's "
                                          "projects (created if missing)."),
                host: str = typer.Option("127.0.0.1", help="Bind address."),
                port: int = typer.Option(8300, help="Port."),
                insecure: bool = typer.Option(False, "--insecure", help="Allow a non-loopback bind address without "
                                              "an API key (logs a warning).")) -> None:
    """Start the console in the browser: create projects, start and watch runs, read the ladder against the
    gates, ask every rung at once, review feedback and start the next iteration. Same auth as `serve`:
    VERTICALIZE_API_KEY, loopback only without a key unless --insecure."""
    from verticalize.console import serve_console

    serve_console(root, host, port, insecure)


def register(app: typer.Typer) -> None:
    app.command("console")(console_cmd)
