"""Import the user's labelled examples (seed data) into the dataset schema.

Accepted forms, detected per row (JSONL/JSON) or per file header (CSV/TSV):
  alpaca          instruction, input (optional), output
  sharegpt        conversations: [{"from": "human"|"gpt"|..., "value": ...}, ...]
  messages        messages: [{"role": "user"|"assistant"|..., "content": ...}, ...]  (OpenAI style, also ours)
  classification  text, label
  qa              question, answer
In CSV, ``conversations``/``messages`` cells hold the JSON list. A malformed row is reported as ``file:line:
reason`` and skipped; the rest of the file goes on. System turns are dropped (the project's system prompt is
used everywhere) and counted. Imported rows are kind "seed", generator "seed:<form>", source = the file name.

An answer (``answer``/``output``) may be a list of references: the first is the training target and the whole
list is kept in ``meta.answers``. A question the documents cannot answer — an empty answer list or
``"answerable": false`` — is a test question only: seed (training) data refuses it, the test-set reader
(``unanswerable_ok``) keeps it with answer "" and ``meta.answerable: false``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verticalize.data.schema import make_example, stable_id
from verticalize.errors import UserError
from verticalize.testsets import FORMS, ParsedRow, RowError, detect_form, iter_rows, parse_row, problem_line, read_text

__all__ = ["FORMS", "SEED_SUFFIXES", "ImportReport", "RowError", "SeedDataError", "detect_form", "example_from_parsed",
           "example_from_row", "import_seed_files", "iter_rows", "read_text", "seed_files"]

SEED_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv")


class SeedDataError(UserError, FileNotFoundError):
    """A seed path that cannot be read at all (missing, or no readable file in it)."""


@dataclass
class ImportReport:
    """What happened to every seed file and row."""

    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    forms: Counter = field(default_factory=Counter)
    system_turns_dropped: int = 0

    @property
    def imported(self) -> int:
        return sum(f["imported"] for f in self.files.values())

    @property
    def skipped(self) -> int:
        return sum(f["skipped"] for f in self.files.values())

    def start_file(self, name: str, path: Path) -> dict[str, Any]:
        """The counts of file ``name`` (created on first use)."""
        return self.files.setdefault(name, {"path": str(path), "rows": 0, "imported": 0, "skipped": 0})

    def accept(self, name: str, form: str, system_turns_dropped: int = 0) -> None:
        self.files[name]["rows"] += 1
        self.files[name]["imported"] += 1
        self.forms[form] += 1
        self.system_turns_dropped += system_turns_dropped

    def refuse(self, name: str, where: str, reason: object) -> None:
        """Count a refused row and report it as ``file:line: reason`` (other places, e.g. "item 3", as given)."""
        self.files[name]["rows"] += 1
        self.files[name]["skipped"] += 1
        self.problems.append(problem_line(name, where, reason))

    def to_dict(self, max_problems: int = 200) -> dict[str, Any]:
        return {"files": self.files, "forms": dict(self.forms), "imported": self.imported, "skipped": self.skipped,
                "system_turns_dropped": self.system_turns_dropped, "problems": self.problems[:max_problems],
                "problems_total": len(self.problems)}


# --------------------------------------------------------------------------------------------- files
def seed_files(paths: list[str | Path]) -> list[Path]:
    """Expand files and directories (recursively, known suffixes only) in a stable order."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SEED_SUFFIXES)
            if not found:
                raise SeedDataError(f"seed data folder {p} holds no {'/'.join(SEED_SUFFIXES)} file")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise SeedDataError(f"seed data file not found: {p} (check project.seed_data)")
    return out


# --------------------------------------------------------------------------------------------- rows
# Reading a row (its form, question, answers, turns) is ``verticalize.testsets.parse_row``, shared with the
# test-set readers; what a dataset example holds is decided here.
def example_from_parsed(parsed: ParsedRow, *, source: str, where: str) -> dict[str, Any]:
    """The dataset example (kind "seed", generator "seed:<form>") of a parsed row. An unanswerable test question
    gets answer "", ``meta.answers`` [] and ``meta.answerable`` false."""
    q = parsed
    if not q.answerable:
        return make_example(q.question, "", kind="seed", generator=f"seed:{q.form}", source=source,
                            id=stable_id("seed", source, where, q.question, "unanswerable"), answers=[],
                            answerable=False)
    extra = {"answers": q.answers} if q.answers is not None else {}
    return make_example(q.question, q.answer, kind="seed", generator=f"seed:{q.form}", task=q.task, source=source,
                        label=q.label, messages=q.messages if q.messages and len(q.messages) > 2 else None,
                        id=stable_id("seed", source, where, q.question, q.answer), **extra)


def example_from_row(row: Any, *, source: str, where: str,
                     unanswerable_ok: bool = False) -> tuple[dict[str, Any], str, int]:
    """(example, form, system turns dropped) for one seed row; raises RowError with the reason.

    ``unanswerable_ok`` (test files only): an unanswerable question (``is_unanswerable``) is kept, with answer ""
    and ``meta.answerable`` false; otherwise it is refused, so it can never become a training row."""
    parsed = parse_row(row, test_set=unanswerable_ok)
    return example_from_parsed(parsed, source=source, where=where), parsed.form, parsed.system_turns_dropped


def import_seed_files(paths: list[str | Path]) -> tuple[list[dict[str, Any]], ImportReport]:
    """Import every seed file; bad rows (and unreadable files) are reported in the report, never raised."""
    report = ImportReport()
    examples: list[dict[str, Any]] = []
    for path in seed_files(paths):
        name = path.name
        stats = report.start_file(name, path)
        try:
            rows = list(iter_rows(path))
        except (RowError, OSError) as e:
            report.problems.append(f"{name}: unreadable file: {e}")
            stats["error"] = str(e)
            continue
        for where, row in rows:
            try:
                example, form, dropped = example_from_row(row, source=name, where=where)
            except RowError as e:
                report.refuse(name, where, e)
                continue
            report.accept(name, form, dropped)
            examples.append(example)
    return examples, report
