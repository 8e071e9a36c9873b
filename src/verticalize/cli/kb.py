"""Knowledge-base commands: ``kb build``, ``kb search``, ``kb eval``, ``kb stats``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from verticalize.artifacts import RunDir
from verticalize.cli.common import ConfigOpt, SetOpt, console, friendly, load, out
from verticalize.errors import UserError

kb_app = typer.Typer(no_args_is_help=True, help="Knowledge base: build, search, evaluate and inspect the index.")

RunArg = typer.Argument(..., help="Run directory (holding kb/) or the kb directory itself.")


@kb_app.command("build")
@friendly
def build(run: Optional[Path] = typer.Option(None, "--run", "-r", help="Run directory (default: project.run_dir)."),
          strict: bool = typer.Option(False, "--strict", help="Fail when any chunk row is refused."),
          config: Optional[Path] = ConfigOpt, set_: Optional[list[str]] = SetOpt) -> None:
    """Index RUN/ingest/chunks.jsonl into RUN/kb."""
    from verticalize.kb import build_kb

    cfg = load(config, set_)
    run_dir = RunDir(run or cfg.project.run_dir)
    with console.status(f"indexing {run_dir.chunks} ..."):
        manifest = build_kb(run_dir.chunks, run_dir.ensure("kb"), cfg.kb, strict=strict)
    counts, q = manifest["counts"], manifest["quality"]
    out.print(f"indexed {counts['chunks']} chunks from {counts['documents']} documents into {run_dir.kb_dir} "
              f"(backend {manifest['backend']}, {sum(manifest['timings_s'].values()):.1f} s); "
              f"quality {q['score']:.2f}")
    if counts["refused"]:
        console.print(f"[yellow]refused {counts['refused']} rows[/] (first: line {manifest['refused'][0]['line']}: "
                      f"{manifest['refused'][0]['reason']}); all listed in {run_dir.kb_dir / 'manifest.json'}")


@kb_app.command("search")
@friendly
def search(run: Path = RunArg, query: str = typer.Argument(..., help="The question or keywords."),
           k: int = typer.Option(5, "-k", min=1, help="Number of chunks to show.")) -> None:
    """Search the knowledge base; shows scores and sources."""
    from verticalize.kb import open_kb

    hits = open_kb(run).search(query, k)
    if not hits:
        out.print("no chunk matches this query")
        return
    table = Table(title=f"top {len(hits)} for: {query}", expand=True)
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("source (¶ chunk)", ratio=1, overflow="fold")
    table.add_column("text", ratio=2)
    for rank, h in enumerate(hits, start=1):
        snippet = " ".join(h.text.split())
        paragraph = h.chunk_id.rsplit(":", 1)[-1]  # ids are <doc_id>:<nnnn>; the source already names the doc
        table.add_row(str(rank), f"{h.score:.3f}", f"{h.source} ¶{paragraph}",
                      snippet[:160] + ("…" if len(snippet) > 160 else ""))
    out.print(table)


def _parse_ks(value: str) -> list[int]:
    try:
        ks = [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--k must be comma-separated positive integers like 1,5,20, got '{value}'") from None
    if not ks or min(ks) < 1:
        raise UserError(f"--k must be comma-separated positive integers like 1,5,20, got '{value}'")
    return ks


@kb_app.command("eval")
@friendly
def evaluate(run: Path = RunArg,
             questions: Path = typer.Argument(..., help="Questions with known answers: our dataset JSONL "
                                                        "(meta.answer, meta.doc_id) or SQuAD JSON."),
             k: str = typer.Option("1,5,20", "--k", help="Cut-offs for recall@k, comma-separated."),
             match: str = typer.Option("either", help="Relevant chunk: either (answer span or gold doc), span, doc."),
             ) -> None:
    """Recall@k and MRR of the retriever on a question set; writes kb/eval.json."""
    from verticalize.kb import evaluate_kb

    report = evaluate_kb(run, questions, _parse_ks(k), match, save=True)  # type: ignore[arg-type]
    table = Table(title=f"retrieval on {report['questions']} questions (match: {report['match']})")
    for name in report["metrics"]:
        table.add_column(name, justify="right")
    table.add_row(*(f"{v:.3f}" for v in report["metrics"].values()))
    out.print(table)
    if report["refused"]:
        first = report["refused_examples"][0]
        console.print(f"[yellow]skipped {report['refused']} questions[/] (first: {first['where']}: {first['reason']})")
    out.print(f"wrote {report['path']}")


@kb_app.command("stats")
@friendly
def stats(run: Path = RunArg, as_json: bool = typer.Option(False, "--json", help="Print the whole manifest.")) -> None:
    """Counts, index details and the knowledge-base quality score."""
    from verticalize.kb import kb_stats

    m = kb_stats(run)
    if as_json:
        print(json.dumps(m, ensure_ascii=False, indent=2))
        return
    table = Table(title="knowledge base", show_header=False)
    table.add_column("key")
    table.add_column("value", justify="right")
    rows = {"backend": m.get("backend"), **m["counts"], **{k: v for k, v in m.get("index", {}).items()}}
    q = m.get("quality", {})
    rows.update({f"quality.{k}": v for k, v in q.items() if k != "definition"})
    for key, value in rows.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    out.print(table)
    if q.get("definition"):
        out.print(f"[dim]{q['definition']}[/]")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    app.add_typer(kb_app, name="kb")
