"""Serving commands: `serve RUN`, `feedback review RUN` (the review queue) and `feedback export RUN`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from verticalize.artifacts import RunDir
from verticalize.cli.common import ConfigOpt, SetOpt, friendly, load_for_run, out
from verticalize.errors import UserError

feedback_app = typer.Typer(no_args_is_help=True, help="Feedback collected by the gateway.")


@friendly
def serve(run: Path = typer.Argument(..., help="Run directory (its adapters and knowledge base are served)."),
          config: Optional[Path] = ConfigOpt, set_: Optional[list[str]] = SetOpt,
          host: Optional[str] = typer.Option(None, help="Bind address (default serve.host)."),
          port: Optional[int] = typer.Option(None, help="Port (default serve.port)."),
          insecure: bool = typer.Option(False, "--insecure", help="Allow a non-loopback bind address without an "
                                        "API key (logs a warning).")) -> None:
    """Start the OpenAI-compatible gateway for a run: the base and every adapter, RAG, metrics, feedback.

    A bind address other than loopback (127.0.0.0/8, ::1, localhost) needs an API key in serve.api_key_env
    (VERTICALIZE_API_KEY), or --insecure."""
    from verticalize.serve import serve_run

    extra = [*(set_ or []), *([f"serve.host={host}"] if host else []), *([f"serve.port={port}"] if port else [])]
    cfg = load_for_run(run, config, extra)
    serve_run(cfg, RunDir(run), insecure=insecure, overrides=extra)


@feedback_app.command("export")
@friendly
def feedback_export(run: Path = typer.Argument(..., help="Run directory that was served."),
                    out_path: Optional[Path] = typer.Option(None, "--out", help="Default RUN/feedback/seed.jsonl "
                                                            "(with --preferences: RUN/feedback/preferences.jsonl)."),
                    min_rating: int = typer.Option(1, help="Uncorrected answers need at least this rating."),
                    preferences: bool = typer.Option(False, "--preferences", help="Write preference pairs "
                                                     "(prompt, chosen, rejected) for preference tuning instead."),
                    ratings: bool = typer.Option(False, "--ratings", help="Write unpaired ratings (prompt, "
                                                 "completion, label) for a kto stage instead "
                                                 "(RUN/feedback/ratings.jsonl)."),
                    test_set: Optional[Path] = typer.Option(None, "--test-set", help="With --preferences or "
                                                            "--ratings: also leave out this test file's "
                                                            "questions.")) -> None:
    """Turn the APPROVED feedback into seed examples (pending and rejected rows are left out)."""
    from verticalize.serve import export_feedback, export_preferences, export_ratings

    if preferences and ratings:
        raise UserError("--preferences and --ratings write different files: give one")
    if ratings:
        c = export_ratings(RunDir(run), out_path, min_rating=min_rating, test_set=test_set)
        out.print(f"exported {c['rows']} rated answers ({c['desirable']} desirable, {c['undesirable']} undesirable; "
                  f"{c['corrections']} corrections) to {c['path']}; left out: {c['test_questions']} test questions, "
                  f"{c['duplicates']} duplicates, {c['conflicting']} rated both ways, {c['pending']} pending, "
                  f"{c['rejected']} rejected")
        return

    if preferences:
        c = export_preferences(RunDir(run), out_path, min_rating=min_rating, test_set=test_set)
        out.print(f"exported {c['pairs']} preference pairs ({c['corrected']} corrected answers, "
                  f"{c['against_sibling']} good answers against a corrected sibling) to {c['path']}; left out: "
                  f"{c['test_questions']} test questions, {c['duplicates']} duplicates, {c['same_text']} with "
                  f"the same text, {c['pending']} pending, {c['rejected']} rejected")
        return
    counts = export_feedback(RunDir(run), out_path, min_rating=min_rating)
    out.print(f"exported {counts['exported']} examples ({counts['corrected']} corrected, {counts['as_answered']} "
              f"as answered) to {counts['path']}; left out: {counts['pending']} pending, {counts['rejected']} "
              f"rejected, {counts['low_rated_without_correction']} approved low ratings without a correction")


def _ids(values: Optional[list[str]], option: str) -> list[int]:
    """``--approve 3 --approve 4,5`` → [3, 4, 5]."""
    ids = []
    for value in values or []:
        for part in value.split(","):
            if part.strip():
                if not part.strip().isdigit():
                    raise UserError(f"{option}: feedback ids are numbers, got {part.strip()!r}")
                ids.append(int(part))
    return ids


def _clip(text: Optional[str], n: int = 60) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _review_table(rows: list[dict]) -> Table:
    table = Table(title="feedback")
    for col in ("id", "status", "key", "rating", "model", "question", "answer", "correction", "reviewer"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["id"]), r["status"], r["key_fingerprint"] or "-", str(r["rating"]), r["model"],
                      _clip(r["question"]), _clip(r["response"]), _clip(r["correction"]), r["reviewer"] or "")
    return table


@feedback_app.command("review")
@friendly
def feedback_review(
        run: Path = typer.Argument(..., help="Run directory that was served."),
        approve: Optional[list[str]] = typer.Option(None, "--approve", help="Approve these feedback ids "
                                                    "(repeatable, or comma-separated)."),
        reject: Optional[list[str]] = typer.Option(None, "--reject", help="Reject these feedback ids."),
        note: Optional[str] = typer.Option(None, help="A note recorded with each decision."),
        reviewer: Optional[str] = typer.Option(None, help="Who reviews (default: the login name)."),
        status: str = typer.Option("pending", help="Rows to list: pending, approved, rejected or all."),
        interactive: bool = typer.Option(False, "--interactive", "-i", help="Go through the pending rows one by "
                                         "one: approve, reject, skip or quit."),
        limit: int = typer.Option(200, help="List at most this many rows.")) -> None:
    """The review queue: list feedback (pending by default), approve or reject it. Only approved feedback becomes
    seed data for `verticalize run --iterate`."""
    import getpass

    from verticalize.serve.feedback import STATUSES, FeedbackStore

    db = RunDir(run).feedback_db
    if not db.is_file():
        raise UserError(f"no feedback store at {db}: serve the run and POST /v1/feedback first")
    store = FeedbackStore(db)
    try:
        who = reviewer or getpass.getuser()
    except (KeyError, OSError):  # no login name in this environment
        who = "cli"
    approve_ids, reject_ids = _ids(approve, "--approve"), _ids(reject, "--reject")
    if approve_ids or reject_ids:
        both = sorted(set(approve_ids) & set(reject_ids))
        if both:
            raise UserError(f"ids both approved and rejected: {', '.join(map(str, both))}")
        known = {r["id"] for r in store.rows()}
        unknown = sorted(set(approve_ids + reject_ids) - known)
        if unknown:  # nothing is changed when one id is wrong
            raise UserError(f"no feedback with id {', '.join(map(str, unknown))} in {db}")
        for decision, ids in (("approve", approve_ids), ("reject", reject_ids)):
            for fid in ids:
                store.review(fid, decision, who, note)
        out.print(f"approved: {', '.join(map(str, approve_ids)) or '-'}; rejected: "
                  f"{', '.join(map(str, reject_ids)) or '-'} (reviewer {who})")
        return
    if interactive:
        _review_interactively(store, who, note)
        return
    if status != "all" and status not in STATUSES:
        raise UserError(f"--status must be one of {', '.join(STATUSES)} or all, got {status!r}")
    rows = store.rows(None if status == "all" else status, limit)
    out.print(_review_table(rows))
    counts = store.counts()
    out.print(f"{counts['pending']} pending, {counts['approved']} approved, {counts['rejected']} rejected; "
              f"decide with --approve ID / --reject ID, or --interactive")


def _review_interactively(store: object, who: str, note: Optional[str]) -> None:
    done = {"approve": 0, "reject": 0}
    for r in store.rows("pending"):  # type: ignore[attr-defined]
        out.print(f"\n[bold]#{r['id']}[/] key {r['key_fingerprint'] or '-'}  rating {r['rating']}  model {r['model']}")
        out.print(f"[bold]question:[/] {escape(r['question'] or '')}")
        out.print(f"[bold]answer:[/] {escape(r['response'] or '')}")
        if r["correction"]:
            out.print(f"[bold]correction:[/] {escape(r['correction'])}")
        if r["comment"]:
            out.print(f"[bold]comment:[/] {escape(r['comment'])}")
        choice = typer.prompt("[a]pprove, [r]eject, [s]kip, [q]uit", default="s").strip().lower()[:1]
        if choice == "q":
            break
        decision = {"a": "approve", "r": "reject"}.get(choice)
        if decision:
            store.review(r["id"], decision, who, note)  # type: ignore[attr-defined]
            done[decision] += 1
    out.print(f"approved {done['approve']}, rejected {done['reject']} (reviewer {who})")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.add_typer(feedback_app, name="feedback")
