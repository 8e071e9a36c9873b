"""Project commands: ``config show`` and ``init``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from verticalize.cli.common import ConfigOpt, SetOpt, friendly, load, out
from verticalize.config import commented_yaml
from verticalize.errors import UserError

config_app = typer.Typer(no_args_is_help=True, help="Inspect the resolved configuration.")

STARTER_README = """# {name}

A verticalize project. Put your domain documents in `docs/`, your labelled examples (optional) in
`seed/`, then run:

    verticalize run project.yaml

Each stage writes its artifacts under the run directory set in `project.run_dir`.
"""


@config_app.command("show")
@friendly
def config_show(config: Optional[Path] = ConfigOpt, set_: Optional[list[str]] = SetOpt) -> None:
    """Print the resolved config (file + overrides + defaults) with help text."""
    cfg = load(config, set_)
    print(commented_yaml(cfg))


@friendly
def init(directory: Path = typer.Argument(..., help="Directory for the new project."),
         force: bool = typer.Option(False, help="Overwrite an existing project.yaml.")) -> None:
    """Write a commented starter project (project.yaml, docs/, seed/)."""
    target = directory / "project.yaml"
    if target.exists() and not force:
        raise UserError(f"{target} already exists; use --force to overwrite it")
    cfg = load(None, [f"project.name={directory.resolve().name}", "project.run_dir=runs",
                      "project.docs=[docs]", "project.seed_data=[]"])
    (directory / "docs").mkdir(parents=True, exist_ok=True)
    (directory / "seed").mkdir(parents=True, exist_ok=True)
    header = ("# verticalize project. Every key is documented; delete what you do not change.\n"
              "# Paths in `project` are relative to this file. Override any key on the command line:\n"
              "#   verticalize run project.yaml --set train.lora.r=16\n\n")
    target.write_text(header + commented_yaml(cfg) + "\n", encoding="utf-8")
    readme = directory / "README.md"
    if not readme.exists():
        readme.write_text(STARTER_README.format(name=cfg.project.name), encoding="utf-8")
    out.print(f"wrote {target}")


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
    app.command("init")(init)
