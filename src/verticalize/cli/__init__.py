"""The ``verticalize`` command. Thin: each command parses options, loads config and calls one function.

Commands are grouped in modules (one per area); each module exposes ``register(app)``.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="verticalize: documents in -> a measured, served, monitored vertical model out.")

_MODULES = ("project", "models", "plan", "train", "ingest", "kb", "data", "evaluate", "pipeline", "serve",
            "export", "console")

for _name in _MODULES:
    importlib.import_module(f"verticalize.cli.{_name}").register(app)


def main() -> None:
    app()
