"""Model commands: ``models`` (the catalog), ``models show NAME``, ``models prepare``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from verticalize.cli.common import ConfigOpt, SetOpt, friendly, load, out
from verticalize.errors import UserError

models_app = typer.Typer(invoke_without_command=True, no_args_is_help=False,
                         help="The base-model catalog; prepare (convert and cache) the configured base model.")


@models_app.callback()
def models_list(ctx: typer.Context) -> None:
    """List the catalog: size, context, licence, commercial use, LoRA targets, chat template."""
    if ctx.invoked_subcommand is not None:
        return
    from verticalize.models import DEFAULT_MODEL, list_specs

    table = Table(title="verticalize model catalog", show_lines=False)
    for col in ("name", "params", "context", "licence", "commercial", "LoRA targets", "template"):
        table.add_column(col, no_wrap=col not in ("LoRA targets",))
    for s in list_specs():
        name = f"{s.name} (default)" if s.name == DEFAULT_MODEL else s.name
        commercial = "[green]yes[/]" if s.commercial_use else "[red]no[/]"
        if s.commercial_use and s.licence not in ("apache-2.0", "mit"):
            commercial = "[yellow]yes, conditions[/]"
        table.add_row(name, s.size_label, f"{s.context_length:,}", s.licence, commercial,
                      ", ".join(s.lora_targets), s.chat_template)
    out.print(table)
    out.print("Details and licence conditions: `verticalize models show NAME`. Any local directory, cached hub id "
              "or .gguf file also works as model.base.")


@models_app.command("show")
@friendly
def models_show(name: str = typer.Argument(..., help="Catalog name or hub id.")) -> None:
    """One catalog entry with its architecture numbers and licence conditions."""
    from verticalize.models import get_spec

    spec = get_spec(name)
    if spec is None:
        raise UserError(f"'{name}' is not in the catalog; list it with `verticalize models`")
    rows = [("name", spec.name), ("hub id", spec.hf_id), ("family", spec.family),
            ("parameters", f"{spec.params:,} ({spec.size_label})"), ("context length", f"{spec.context_length:,}"),
            ("layers", spec.num_layers), ("hidden size", spec.hidden_size),
            ("intermediate size", spec.intermediate_size),
            ("attention heads / KV heads", f"{spec.num_heads} / {spec.num_kv_heads}"),
            ("vocabulary", f"{spec.vocab_size:,}"), ("tied embeddings", spec.tie_embeddings),
            ("LoRA targets", ", ".join(spec.lora_targets)), ("chat template", spec.chat_template),
            ("licence", spec.licence), ("commercial use", "yes" if spec.commercial_use else "no"),
            ("licence conditions", spec.licence_note)]
    table = Table(show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, str(value))
    out.print(table)


@models_app.command("prepare")
@friendly
def models_prepare(config: Optional[Path] = ConfigOpt, set_: Optional[list[str]] = SetOpt) -> None:
    """Convert and cache the configured base model (once), then print its path and load time."""
    from verticalize.models import prepare_base

    cfg = load(config, set_)
    info = prepare_base(cfg.model)
    out.print(f"base      {info['base']}" + (f" (catalog: {info['catalog']})" if info["catalog"] else ""))
    out.print(f"path      {info['path']}")
    out.print(f"resolve   {info['resolve_seconds']:.2f} s (includes the one-time conversion when it ran now)")
    out.print(f"load      {info['load_seconds']:.2f} s  dtype {info['dtype']}  {info['params']:,} parameters  "
              f"{info['architecture']}  chat template: {'yes' if info['has_chat_template'] else 'no'}")


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
