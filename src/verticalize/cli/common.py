"""What every command shares: the config options, loading, and turning known errors into one clear line."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.markup import escape

from verticalize.config import Config, ConfigError, load_config

console = Console(stderr=True, soft_wrap=True)
out = Console()

ConfigOpt = typer.Option(None, "--config", "-c", help="Project YAML (default: built-in defaults).")
SetOpt = typer.Option(None, "--set", "-s", help="Override a config key: key.sub=value (repeatable).")


class UserError(Exception):
    """An error caused by input the user can fix; shown as one line, exit code 2."""


def load(config: Optional[Path], overrides: Optional[list[str]], extra: Optional[list[str]] = None) -> Config:
    return load_config(config, list(overrides or []) + list(extra or []))


def load_for_run(run: Path, config: Optional[Path], overrides: Optional[list[str]]) -> Config:
    """Config for a command on an existing run: --config if given, else the run's own resolved config.yaml."""
    saved = Path(run) / "config.yaml"
    path = config or (saved if saved.is_file() else None)
    return load_config(path, [f"project.run_dir={Path(run).resolve()}", *(overrides or [])])


# Stage errors that mean "fix your input or settings", shown as one line. Listed by name so that importing the CLI
# does not import every stage.
_STAGE_USER_ERRORS = ("verticalize.ingest.pipeline:IngestError", "verticalize.kb.base:KBError",
                      "verticalize.train.data:TrainError", "verticalize.plan.estimator:DoesNotFitError",
                      "verticalize.export:ExportError", "verticalize.export.gguf:GGUFExportError",
                      "verticalize.data.teacher:TeacherError")


def user_error_types() -> tuple[type[BaseException], ...]:
    import importlib

    found: list[type[BaseException]] = [ConfigError, UserError, FileNotFoundError]
    for spec in _STAGE_USER_ERRORS:
        module, name = spec.split(":")
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Known, user-fixable errors become one red line and exit 2 instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            if not isinstance(e, user_error_types()):
                raise
            console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
            sys.exit(2)

    return wrapper
