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

import csv
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from verticalize.data.schema import make_example, stable_id
from verticalize.encoding import BinaryContentError, decode_bytes
from verticalize.errors import UserError
from verticalize.testsets import is_unanswerable

SEED_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv")
FORMS = ("alpaca", "sharegpt", "messages", "classification", "qa")

_USER_ROLES = {"user", "human"}
_ASSISTANT_ROLES = {"assistant", "gpt", "bot", "model", "chatgpt"}
_EXPECTED = ("expected one of: alpaca (instruction, output), sharegpt (conversations), messages (messages), "
             "classification (text, label), qa (question, answer)")


class SeedDataError(UserError, FileNotFoundError):
    """A seed path that cannot be read at all (missing, or no readable file in it)."""


class RowError(ValueError):
    """One row that cannot be imported; the message is the reason."""


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
        loc = where.split()[-1] if where.startswith("line ") else where
        self.problems.append(f"{name}:{loc}: {reason}")

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


def read_text(path: Path) -> str:
    """Decode a user file with the shared detection (``verticalize.encoding``, as ingest reads documents): BOMs,
    UTF-8, BOM-less UTF-16, GB18030/GBK, Big5…"""
    try:
        return decode_bytes(path.read_bytes())[0]
    except BinaryContentError as e:
        raise RowError(f"not a text file: {e}") from None


def iter_rows(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, row) pairs; ``where`` is 'line N' / 'item N'. A row that is not even parseable yields a RowError."""
    text = read_text(path)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        yield from _csv_rows(text, "\t" if suffix == ".tsv" else None)
        return
    if suffix == ".json":
        try:
            whole = json.loads(text)
        except json.JSONDecodeError:
            whole = None  # a .json file holding JSON lines: read it line by line below
        if isinstance(whole, list):
            for i, row in enumerate(whole, 1):
                yield f"item {i}", row
            return
        if isinstance(whole, dict):
            yield "line 1", whole
            return
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield f"line {n}", json.loads(line)
        except json.JSONDecodeError as e:
            yield f"line {n}", RowError(f"invalid JSON ({e.msg} at column {e.colno})")


def _csv_rows(text: str, delimiter: str | None) -> Iterator[tuple[str, Any]]:
    if delimiter is None:
        first = text.split("\n", 1)[0]
        delimiter = max(",\t;|", key=first.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, None)
    if not header:
        return
    names = [h.strip().lower() for h in header]
    for cells in reader:
        where = f"line {reader.line_num}"
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(names):
            yield where, RowError(f"row has {len(cells)} fields, the header has {len(names)}")
            continue
        row: dict[str, Any] = dict(zip(names, cells))
        for key in ("messages", "conversations"):
            if key in row:
                try:
                    row[key] = json.loads(row[key])
                except json.JSONDecodeError:
                    yield where, RowError(f"column '{key}' must hold a JSON list of turns")
                    break
        else:
            yield where, row


# --------------------------------------------------------------------------------------------- rows
def detect_form(row: dict[str, Any]) -> str | None:
    if "messages" in row:
        return "messages"
    if "conversations" in row:
        return "sharegpt"
    # One identifying key is enough: a row with "instruction" but no "output" is a broken alpaca row, and saying
    # "missing 'output'" helps more than "unrecognised".
    if "instruction" in row:
        return "alpaca"
    if "question" in row:
        return "qa"
    if "label" in row:
        return "classification"
    return None


def _text(row: dict[str, Any], key: str, *, required: bool = True) -> str:
    value = row.get(key)
    if value is None:
        if required:
            raise RowError(f"missing '{key}'")
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and key == "label":
        value = str(value)
    if not isinstance(value, str):
        raise RowError(f"'{key}' must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise RowError(f"empty '{key}'")
    return value.strip()


def _answers(row: dict[str, Any], key: str) -> tuple[str, list[str] | None]:
    """(training answer, every reference when the row gave a list, else None) of ``row[key]``."""
    value = row.get(key)
    if not isinstance(value, list):
        return _text(row, key), None
    if not all(isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in value):
        raise RowError(f"'{key}' must be a string or a list of strings")
    answers = list(dict.fromkeys(str(a).strip() for a in value if str(a).strip()))
    if not answers:
        raise RowError(f"empty '{key}'")
    return answers[0], answers


def _unanswerable_example(row: dict[str, Any], form: str, *, source: str, where: str) -> dict[str, Any]:
    """A test question without an answer: answer "", ``meta.answers`` [] and ``meta.answerable`` false."""
    meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
    if form == "classification" or meta.get("task") == "classification":
        raise RowError("a classification row cannot be unanswerable (it needs a label)")
    if form == "alpaca":
        instruction, extra = _text(row, "instruction"), _text(row, "input", required=False)
        question = f"{instruction}\n{extra}" if extra else instruction
    elif form == "qa":
        question = _text(row, "question")
    else:
        key, role_key, content_key = (("messages", "role", "content") if form == "messages"
                                      else ("conversations", "from", "value"))
        turns = row.get(key) if isinstance(row.get(key), list) else []
        users = [t[content_key].strip() for t in turns if isinstance(t, dict)
                 and str(t.get(role_key, "")).lower() in _USER_ROLES and isinstance(t.get(content_key), str)
                 and t[content_key].strip()]
        if not users:
            raise RowError(f"'{key}' has no user turn with the question")
        question = users[-1]
    return make_example(question, "", kind="seed", generator=f"seed:{form}", source=source,
                        id=stable_id("seed", source, where, question, "unanswerable"), answers=[],
                        answerable=False)


def _turns(row: dict[str, Any], key: str, role_key: str, content_key: str) -> tuple[list[dict[str, str]], int]:
    """Normalised user/assistant turns and how many system turns were dropped."""
    turns = row.get(key)
    if not isinstance(turns, list) or not turns:
        raise RowError(f"'{key}' must be a non-empty list of turns")
    out: list[dict[str, str]] = []
    dropped = 0
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise RowError(f"{key}[{i}] must be an object")
        role = str(turn.get(role_key, "")).lower()
        content = turn.get(content_key)
        if not isinstance(content, str):
            raise RowError(f"{key}[{i}].{content_key} must be a string")
        if role == "system":
            dropped += 1
            continue
        if role in _USER_ROLES:
            role = "user"
        elif role in _ASSISTANT_ROLES:
            role = "assistant"
        else:
            raise RowError(f"{key}[{i}] has unsupported role {turn.get(role_key)!r}")
        expected = "user" if len(out) % 2 == 0 else "assistant"
        if role != expected:
            raise RowError(f"{key}[{i}] should be a {expected} turn (turns must alternate, user first)")
        if not content.strip():
            raise RowError(f"{key}[{i}] is empty")
        out.append({"role": role, "content": content.strip()})
    if not out or out[-1]["role"] != "assistant":
        raise RowError(f"'{key}' must end with an assistant answer")
    return out, dropped


def example_from_row(row: Any, *, source: str, where: str,
                     unanswerable_ok: bool = False) -> tuple[dict[str, Any], str, int]:
    """(example, form, system turns dropped) for one seed row; raises RowError with the reason.

    ``unanswerable_ok`` (test files only): an unanswerable question (``is_unanswerable``) is kept, with answer ""
    and ``meta.answerable`` false; otherwise it is refused, so it can never become a training row."""
    if isinstance(row, RowError):
        raise row
    if not isinstance(row, dict):
        raise RowError(f"expected a JSON object, got {type(row).__name__}")
    form = detect_form(row)
    if form is None and isinstance(row.get("data"), list):
        raise RowError("this looks like a SQuAD file: give it as project.test_set (seed data holds training rows)")
    if form is None:
        raise RowError(f"unrecognised row with keys {sorted(row)[:8]}; {_EXPECTED}")
    if row.get("answerable") is True and any(row.get(k) == [] for k in ("answer", "output")):
        raise RowError("answerable is true but the answer list is empty")
    if is_unanswerable(row):
        if not unanswerable_ok:
            raise RowError("unanswerable question (empty answer list or answerable: false): seed data holds "
                           "training rows; give it in project.test_set")
        return _unanswerable_example(row, form, source=source, where=where), form, 0
    dropped = 0
    answers: list[str] | None = None
    messages = None
    task, label = "qa", None
    if form == "alpaca":
        instruction, extra = _text(row, "instruction"), _text(row, "input", required=False)
        question = f"{instruction}\n{extra}" if extra else instruction
        answer, answers = _answers(row, "output")
    elif form == "classification":
        question, answer = _text(row, "text"), _text(row, "label")
        task, label = "classification", answer
    elif form == "qa":
        question = _text(row, "question")
        answer, answers = _answers(row, "answer")
    else:
        keys = ("messages", "role", "content") if form == "messages" else ("conversations", "from", "value")
        messages, dropped = _turns(row, *keys)
        question, answer = messages[-2]["content"], messages[-1]["content"]
        meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
        if meta.get("task") == "classification":  # our own classification rows exported as messages
            task, label = "classification", str(meta.get("label", answer))
    extra = {"answers": answers} if answers is not None else {}
    example = make_example(question, answer, kind="seed", generator=f"seed:{form}", task=task, source=source,
                           label=label, messages=messages if messages and len(messages) > 2 else None,
                           id=stable_id("seed", source, where, question, answer), **extra)
    return example, form, dropped


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
