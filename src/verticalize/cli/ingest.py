"""Ingest commands: ``verticalize ingest DOCS...`` and ``verticalize ingest show RUN``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click
import typer
from rich.markup import escape
from typer.core import TyperGroup

from verticalize.artifacts import RunDir
from verticalize.cli.common import ConfigOpt, SetOpt, console, friendly, load, out


class _IngestGroup(TyperGroup):
    """`verticalize ingest DOCS...` is short for `verticalize ingest run DOCS...`; `show` stays a sub-command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


ingest_app = typer.Typer(cls=_IngestGroup, no_args_is_help=True,
                         help="Read documents into a cleaned, PII-redacted, deduplicated chunk corpus "
                              "(`verticalize ingest DOCS...`), or inspect one (`verticalize ingest show RUN`).")


@ingest_app.command("run")
@friendly
def run_ingest(docs: Optional[list[str]] = typer.Argument(None, help="Folders (recursive), files or globs; "
                                                                     "default: project.docs."),
               run: Optional[Path] = typer.Option(None, "--run", "-r", help="Run directory (default: "
                                                                           "project.run_dir)."),
               strict: bool = typer.Option(False, "--strict", help="Fail (writing nothing) if any file is skipped."),
               config: Optional[Path] = ConfigOpt, set_: Optional[list[str]] = SetOpt) -> None:
    """Ingest DOCS into RUN/ingest (chunks.jsonl, documents.jsonl, manifest.json)."""
    from verticalize.ingest import ingest

    cfg = load(config, set_)
    run_dir = RunDir(run or cfg.project.run_dir)
    manifest = ingest(list(docs or cfg.project.docs), run_dir.ensure("ingest"), cfg.ingest, strict=strict)
    c = manifest["counts"]
    pii = ", ".join(f"{k} {v}" for k, v in c["pii"].items()) or "none found"
    out.print(f"ingested {c['files_ok']} of {c['files']} files -> {c['documents']} documents, {c['chunks']} chunks "
              f"({c['chars']:,} chars) in {run_dir.stage('ingest')}; PII redacted: {pii}; "
              f"dedup drops: exact {c['dedup']['exact']}, near {c['dedup']['near']}", highlight=False, markup=False)
    skipped = [f for f in manifest["files"] if f["status"] == "skipped"]
    for f in skipped[:10]:
        console.print(f"[yellow]skipped[/] {escape(f['source'])}: {f['reason']} ({escape(f['detail'])})",
                      highlight=False)
    if len(skipped) > 10:
        console.print(f"... and {len(skipped) - 10} more; see `verticalize ingest show {run_dir.root}`")


@ingest_app.command("show")
@friendly
def show(run: Path = typer.Argument(..., help="Run directory (holding ingest/) or the ingest directory.")) -> None:
    """Print the ingest manifest: totals, skipped files with reasons, accepted files."""
    from verticalize.ingest import manifest_summary

    out.print(manifest_summary(run))


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    app.add_typer(ingest_app, name="ingest")
