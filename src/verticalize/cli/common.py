"""What every command shares: the config options, loading, and turning known errors into one clear line."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.markup import escape

from verticalize.artifacts import RunDir
from verticalize.config import Config, load_config
from verticalize.errors import UserError

console = Console(stderr=True, soft_wrap=True)
out = Console()

ConfigOpt = typer.Option(None, "--config", "-c", help="Project YAML (default: built-in defaults).")
SetOpt = typer.Option(None, "--set", "-s", help="Override a config key: key.sub=value (repeatable).")


def load(config: Optional[Path], overrides: Optional[list[str]], extra: Optional[list[str]] = None) -> Config:
    return load_config(config, list(overrides or []) + list(extra or []))


def load_for_run(run: Path, config: Optional[Path], overrides: Optional[list[str]]) -> Config:
    """Config for a command on an existing run: --config if given, else the run's own resolved config.yaml."""
    saved = RunDir(run).config_file
    path = config or (saved if saved.is_file() else None)
    return load_config(path, [f"project.run_dir={Path(run).resolve()}", *(overrides or [])])


# What the user can fix: every stage's user errors derive from UserError (ConfigError too); a plain
# FileNotFoundError (a path given on the command line that does not exist) is shown the same way.
USER_ERRORS: tuple[type[BaseException], ...] = (UserError, FileNotFoundError)


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Known, user-fixable errors become one red line and exit 2 instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            if not isinstance(e, USER_ERRORS):
                raise
            console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
            sys.exit(2)

    return wrapper
