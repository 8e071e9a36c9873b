"""What every command shares: the config options, loading, and turning known errors into one clear line."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console

from verticalize.config import Config, ConfigError, load_config

console = Console(stderr=True)
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


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Known, user-fixable errors become one red line and exit 2 instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ConfigError, UserError, FileNotFoundError) as e:
            console.print(f"[bold red]error:[/] {e}", highlight=False, markup=True)
            sys.exit(2)

    return wrapper


def user_error_types() -> tuple[type[BaseException], ...]:
    return (ConfigError, UserError, FileNotFoundError)
