"""A readable summary of an ingest manifest (``verticalize ingest show RUN``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Group
from rich.markup import escape
from rich.table import Table

from verticalize.artifacts import RunDir, read_manifest


def manifest_summary(run_dir: str | Path, max_files: int = 50) -> Group:
    """Totals, then every skipped file with its reason, then the accepted files (up to ``max_files``)."""
    stage_dir = Path(run_dir)
    if not (stage_dir / "manifest.json").is_file() and (stage_dir / "ingest").is_dir():
        stage_dir = RunDir(stage_dir).stage("ingest")
    manifest = read_manifest(stage_dir)
    return Group(_totals(manifest["counts"]), *_file_tables(manifest.get("files", []), max_files))


def _totals(counts: dict[str, Any]) -> Table:
    table = Table(title="ingest", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    skipped = ", ".join(f"{r} {n}" for r, n in counts.get("skipped_by_reason", {}).items()) or "-"
    rows = [
        ("files", f"{counts['files']} ({counts['files_ok']} ok, {counts['files_skipped']} skipped)"),
        ("skipped by reason", skipped),
        ("documents", str(counts["documents"])),
        ("chunks", str(counts["chunks"])),
        ("characters", f"{counts['chars']:,}"),
        ("languages", ", ".join(f"{k} {v}" for k, v in counts.get("languages", {}).items()) or "-"),
        ("PII redacted", ", ".join(f"{k} {v}" for k, v in counts.get("pii", {}).items()) or "none found"),
        ("dedup drops", ", ".join(f"{k} {v}" for k, v in counts.get("dedup", {}).items())),
        ("boilerplate lines", str(counts.get("boilerplate_lines", 0))),
        ("time", f"{counts.get('seconds', 0):.1f} s ({counts.get('mb_per_min', 0):.1f} MB/min)"),
    ]
    for row in rows:
        table.add_row(*row)
    return table


def _file_tables(files: list[dict[str, Any]], max_files: int) -> list[Table]:
    tables = []
    skipped = [f for f in files if f["status"] == "skipped"]
    if skipped:
        t = Table(title="skipped files")
        for col in ("source", "reason", "detail"):
            t.add_column(col)
        for f in skipped:
            t.add_row(escape(f["source"]), f["reason"], escape(f.get("detail", "")))
        tables.append(t)
    ok = [f for f in files if f["status"] == "ok"]
    if ok:
        t = Table(title=f"accepted files ({len(ok)}{', first ' + str(max_files) if len(ok) > max_files else ''})")
        for col in ("source", "encoding", "documents", "chunks", "chars", "PII", "notes"):
            t.add_column(col)
        for f in ok[:max_files]:
            pii = ", ".join(f"{k} {v}" for k, v in f.get("pii", {}).items())
            notes = escape("; ".join(f.get("warnings", [])))
            t.add_row(escape(f["source"]), f.get("encoding", "-"), str(f.get("documents", 0)),
                      str(f.get("chunks", 0)), str(f.get("chars", 0)), pii, notes)
        tables.append(t)
    return tables
