"""Reading example files, for every stage that reads one: the data stage (seed data, and ``project.test_set``
which replaces the test split), evaluate (the ladder's test set: the test split or ``--test-set FILE``) and kb
(retrieval evaluation questions).

One reading of each form:
    SQuAD JSON (SQuAD 1.1/2.0, CMRC 2018, DRCD): ``{"data": [{"title", "paragraphs": [{"context", "qas": [{"id",
        "question", "answers": [{"text"}], "is_impossible"?}]}]}]}`` -> ``squad_questions`` yields one
        ``SquadQuestion`` per entry of ``qas`` (question and answers stripped, answers deduplicated, SQuAD 2.0's
        ``"is_impossible": true`` as ``impossible``); malformed entries are skipped, not fatal.
    Rows (JSONL, a JSON list, CSV/TSV with a header; ``iter_rows``): ``parse_row`` is the one reading of a row, in
        any of the forms alpaca (instruction, input?, output), sharegpt (conversations), messages (messages, also
        our own dataset rows with ``meta``), classification (text, label; or instruction/question with a label and
        no answer) and qa (question, answer). An answer may be a list of references.
    ``is_unanswerable(row)`` is the one rule for a row that marks its question as one the documents cannot answer:
        ``"answerable": false`` (on the row or in its meta, also "false"/"no"/"0") or an empty answer list
        (``answer``, ``output`` or ``meta.answer`` is ``[]``). Only a test set keeps such a row.
    ``read_test_file(path)`` is the one reader of a test-set file (SQuAD JSON or rows): every question with its
        ``ParsedRow`` or the reason it is refused and where (``line N``/``item N``/``data[..].qas[..]``).

What a stage builds from a question (a dataset example, a ladder ``TestExample``, a retrieval question) and
which questions it refuses beyond these rules stay with the stage. ``TestSetError`` is the one error for an
unusable test set; ``RowError`` is the reason one row is refused.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from verticalize.encoding import BinaryContentError, decode_bytes
from verticalize.errors import TestSetError

__all__ = ["FORMS", "ParsedRow", "RowError", "SquadQuestion", "TestFile", "TestRow", "TestSetError", "detect_form",
           "is_false", "is_squad", "is_unanswerable", "iter_rows", "no_usable_question", "parse_row", "problem_line",
           "read_test_file", "read_text", "squad_questions"]

FORMS = ("alpaca", "sharegpt", "messages", "classification", "qa")

_USER_ROLES = {"user", "human"}
_ASSISTANT_ROLES = {"assistant", "gpt", "bot", "model", "chatgpt"}
_EXPECTED = ("expected one of: alpaca (instruction, output), sharegpt (conversations), messages (messages), "
             "classification (text, label), qa (question, answer)")


class RowError(ValueError):
    """One row that cannot be used; the message is the reason."""


@dataclass(frozen=True)
class SquadQuestion:
    where: str                  # "data[0].paragraphs[1].qas[2]"
    article: int
    paragraph: int
    index: int                  # the question's place in its paragraph's qas
    qa_id: str | None           # the file's id, when it gives one
    question: str               # stripped; "" when missing
    answers: list[str] = field(default_factory=list)  # stripped, non-empty, each once, in file order
    impossible: bool = False    # SQuAD 2.0 "is_impossible": true (the paragraph does not answer it)
    title: str = ""
    context: str = ""
    paragraph_id: Any = None    # the paragraph's own id, when it has one


def is_squad(obj: Any) -> bool:
    """A parsed JSON document in SQuAD form: a top-level ``data`` list holding articles with ``paragraphs``."""
    data = obj.get("data") if isinstance(obj, dict) else None
    return isinstance(data, list) and any(isinstance(d, dict) and "paragraphs" in d for d in data)


def squad_questions(obj: dict[str, Any]) -> Iterator[SquadQuestion]:
    """Every question of a SQuAD-form document, in file order."""
    for a_i, article in enumerate(obj.get("data") or []):
        if not isinstance(article, dict):
            continue
        title = str(article.get("title") or "")
        for p_i, para in enumerate(article.get("paragraphs") or []):
            if not isinstance(para, dict):
                continue
            context = para.get("context") or ""
            for q_i, qa in enumerate(para.get("qas") or []):
                if not isinstance(qa, dict):
                    continue
                answers = [str(a.get("text") or "").strip() for a in qa.get("answers") or [] if isinstance(a, dict)]
                yield SquadQuestion(where=f"data[{a_i}].paragraphs[{p_i}].qas[{q_i}]", article=a_i, paragraph=p_i,
                                    index=q_i, qa_id=str(qa["id"]) if qa.get("id") else None,
                                    question=str(qa.get("question") or "").strip(),
                                    answers=list(dict.fromkeys(a for a in answers if a)),
                                    impossible=qa.get("is_impossible") is True, title=title,
                                    context=context if isinstance(context, str) else "",
                                    paragraph_id=para.get("id"))


def is_false(value: Any) -> bool:
    """``false`` as a JSON boolean or as the strings "false", "no", "0" (CSV cells, hand-written files)."""
    return value is False or (isinstance(value, str) and value.strip().lower() in ("false", "no", "0"))


def is_unanswerable(row: Any) -> bool:
    """Whether a row marks its question as one the documents cannot answer: ``"answerable": false`` (on the
    row or in its meta) or an empty answer list (``answer``/``output``/``meta.answer``)."""
    if not isinstance(row, dict):
        return False
    meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
    if is_false(row.get("answerable")) or is_false(meta.get("answerable")):
        return True
    return any(isinstance(v, list) and not v for v in (row.get("answer"), row.get("output"), meta.get("answer")))


# --------------------------------------------------------------------------------------------- files of rows
def read_text(path: Path) -> str:
    """Decode a user file with the shared detection (``verticalize.encoding``, as ingest reads documents): BOMs,
    UTF-8, BOM-less UTF-16, GB18030/GBK, Big5…"""
    try:
        return decode_bytes(Path(path).read_bytes())[0]
    except BinaryContentError as e:
        raise RowError(f"not a text file: {e}") from None


def iter_rows(path: Path, text: str | None = None) -> Iterator[tuple[str, Any]]:
    """(where, row) pairs; ``where`` is 'line N' / 'item N'. A row that is not even parseable yields a RowError."""
    text = read_text(path) if text is None else text
    suffix = Path(path).suffix.lower()
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


# --------------------------------------------------------------------------------------------- one row
@dataclass
class ParsedRow:
    """What one row says: its question and reference answer(s), task and label, in the form it was given."""

    form: str                                  # one of FORMS, or "squad"
    question: str
    answer: str                                # the first reference (the training target); "" when unanswerable
    answers: list[str] | None = None           # every reference, when the row gave a list
    task: str = "qa"
    label: str | None = None
    messages: list[dict[str, str]] | None = None  # the normalised user/assistant turns (messages/sharegpt)
    system_turns_dropped: int = 0
    answerable: bool = True

    @property
    def references(self) -> list[str]:
        """Every reference answer (a classification row: its label); [] for an unanswerable question."""
        if not self.answerable:
            return []
        if self.task == "classification" and self.label is not None:
            return [self.label]
        return list(self.answers) if self.answers else [self.answer]


def detect_form(row: dict[str, Any]) -> str | None:
    if "messages" in row:
        return "messages"
    if "conversations" in row:
        return "sharegpt"
    # A label without an answer is a classification row, whichever key holds its text.
    if "label" in row and "output" not in row and "answer" not in row:
        return "classification"
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


def _references(value: list[Any], key: str) -> list[str]:
    if not all(isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in value):
        raise RowError(f"'{key}' must be a string or a list of strings")
    return list(dict.fromkeys(str(a).strip() for a in value if str(a).strip()))


def _answers(row: dict[str, Any], key: str) -> tuple[str, list[str] | None]:
    """(training answer, every reference when the row gave a list, else None) of ``row[key]``."""
    value = row.get(key)
    if not isinstance(value, list):
        return _text(row, key), None
    answers = _references(value, key)
    if not answers:
        raise RowError(f"empty '{key}'")
    return answers[0], answers


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


def _meta(row: dict[str, Any]) -> dict[str, Any]:
    return row.get("meta") if isinstance(row.get("meta"), dict) else {}


def _alpaca_question(row: dict[str, Any]) -> str:
    instruction, extra = _text(row, "instruction"), _text(row, "input", required=False)
    return f"{instruction}\n{extra}" if extra else instruction


def _classification_text_key(row: dict[str, Any]) -> str:
    return next((k for k in ("text", "instruction", "question") if k in row), "text")  # none: "missing 'text'"


def _unanswerable(row: dict[str, Any], form: str) -> ParsedRow:
    """A test question without an answer: answer "", no references."""
    if form == "classification" or _meta(row).get("task") == "classification":
        raise RowError("a classification row cannot be unanswerable (it needs a label)")
    if form == "alpaca":
        question = _alpaca_question(row)
    elif form == "qa":
        question = _text(row, "question")
    else:
        key, role_key, content_key = (("messages", "role", "content") if form == "messages"
                                      else ("conversations", "from", "value"))
        turns = row.get(key) if isinstance(row.get(key), list) else []
        users = [t[content_key].strip() for t in turns if isinstance(t, dict)
                 and str(t.get(role_key, "")).lower() in _USER_ROLES and isinstance(t.get(content_key), str)
                 and t[content_key].strip()]
        question = _meta_text(_meta(row), "question") or (users[-1] if users else "")
        if not question:
            raise RowError(f"'{key}' has no user turn with the question")
    return ParsedRow(form, question, "", answers=[], answerable=False)


def parse_row(row: Any, *, test_set: bool = False) -> ParsedRow:
    """The one reading of a seed or test-set row; raises RowError with the reason.

    ``test_set``: the row is a test question. An unanswerable question (``is_unanswerable``) is then kept (answer
    "", no references); otherwise it is refused, so it can never become a training row. In a test set a
    messages row's ``meta`` also speaks for it, as in our own dataset rows: ``meta.question`` and
    ``meta.answer`` (a string or a list) win over the turns and ``meta.answers`` holds every reference."""
    if isinstance(row, RowError):
        raise row
    if not isinstance(row, dict):
        raise RowError(f"expected a JSON object, got {type(row).__name__}")
    form = detect_form(row)
    if form is None and isinstance(row.get("data"), list):
        raise RowError("this looks like a SQuAD file without paragraphs" if test_set else
                       "this looks like a SQuAD file: give it as project.test_set (seed data holds training rows)")
    if form is None:
        raise RowError(f"unrecognised row with keys {sorted(row)[:8]}; {_EXPECTED}")
    if row.get("answerable") is True and any(row.get(k) == [] for k in ("answer", "output")):
        raise RowError("answerable is true but the answer list is empty")
    if is_unanswerable(row):
        if not test_set:
            raise RowError("unanswerable question (empty answer list or answerable: false): seed data holds "
                           "training rows; give it in project.test_set")
        return _unanswerable(row, form)
    dropped = 0
    answers: list[str] | None = None
    messages = None
    task, label = "qa", None
    if form == "alpaca":
        question = _alpaca_question(row)
        answer, answers = _answers(row, "output")
    elif form == "classification":
        question, answer = _text(row, _classification_text_key(row)), _text(row, "label")
        task, label = "classification", answer
    elif form == "qa":
        question = _text(row, "question")
        answer, answers = _answers(row, "answer")
    else:
        keys = ("messages", "role", "content") if form == "messages" else ("conversations", "from", "value")
        messages, dropped = _turns(row, *keys)
        question, answer = messages[-2]["content"], messages[-1]["content"]
        meta = _meta(row)
        if test_set:
            question, answer, answers = _meta_question(meta, question, answer)
        if meta.get("task") == "classification":  # our own classification rows exported as messages
            task, label = "classification", str(meta.get("label", answer))
    return ParsedRow(form, question, answer, answers=answers, task=task, label=label, messages=messages,
                     system_turns_dropped=dropped)


def _meta_question(meta: dict[str, Any], question: str, answer: str) -> tuple[str, str, list[str] | None]:
    """(question, answer, references) of a messages row whose meta speaks for it (our own dataset rows)."""
    question = _meta_text(meta, "question") or question
    answers = None
    if isinstance(meta.get("answer"), list):
        answers = _references(meta["answer"], "meta.answer") or None
        answer = answers[0] if answers else answer
    else:
        answer = _meta_text(meta, "answer") or answer
    if isinstance(meta.get("answers"), list):  # the data stage keeps every reference of a question here
        answers = _references(meta["answers"], "meta.answers") or answers
    return question, answer, answers


def _meta_text(meta: dict[str, Any], key: str) -> str:
    value = meta.get(key)
    return value.strip() if isinstance(value, str) else ""


# --------------------------------------------------------------------------------------------- test-set files
@dataclass
class TestRow:
    """One question of a test-set file: what it says (``parsed``) or why it is refused (``error``)."""

    __test__ = False
    where: str                      # "line 3", "item 2" (a JSON list), "data[0].paragraphs[1].qas[2]" (SQuAD)
    key: int | str                  # its row number, or a SQuAD question's id (its where when it has none)
    row: Any                        # the raw row (a dict, or the value that was not one); a SquadQuestion
    parsed: ParsedRow | None = None
    error: str | None = None


@dataclass
class TestFile:
    __test__ = False
    path: Path
    squad: bool                     # SQuAD JSON (rows are SquadQuestions) rather than rows
    rows: list[TestRow]

    def problems(self) -> list[str]:
        """Every refused question as ``file:line: reason`` (``problem_line``)."""
        return [problem_line(self.path.name, r.where, r.error) for r in self.rows if r.error is not None]


def problem_line(name: str, where: str, reason: object) -> str:
    """A refused row as ``file:line: reason`` (other places, e.g. "item 3" or a SQuAD path, as given)."""
    loc = where.split()[-1] if where.startswith("line ") else where
    return f"{name}:{loc}: {reason}"


def read_test_file(path: str | Path, *, hint: str = "") -> TestFile:
    """The one reader of a test-set file: SQuAD JSON (by content) or rows in any seed form (``parse_row`` with
    unanswerable questions kept). Raises TestSetError when the file is missing or unreadable (``hint`` is added
    to the not-found message); refused questions are returned with their reason, never raised."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise TestSetError(f"test set not found: {p}{hint}")
    try:
        text = read_text(p)
    except (RowError, OSError) as e:
        raise TestSetError(f"test set {p} cannot be read: {e}") from None
    if p.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            obj = None
        if is_squad(obj):
            return TestFile(p, True, [_squad_row(q) for q in squad_questions(obj)])
    rows = []
    for where, row in iter_rows(p, text):
        key: int | str = int(where.split()[-1]) if where.split()[-1].isdigit() else where
        try:
            rows.append(TestRow(where, key, row, parsed=parse_row(row, test_set=True)))
        except RowError as e:
            rows.append(TestRow(where, key, row, error=str(e)))
    return TestFile(p, False, rows)


def _squad_row(q: SquadQuestion) -> TestRow:
    key = q.qa_id or q.where
    if not q.question:
        return TestRow(q.where, key, q, error="no question")
    if not (q.answers or q.impossible):
        return TestRow(q.where, key, q, error="no answer (mark an unanswerable question with \"is_impossible\": true)")
    parsed = ParsedRow("squad", q.question, "" if q.impossible else q.answers[0],
                       answers=[] if q.impossible else q.answers, answerable=not q.impossible)
    return TestRow(q.where, key, q, parsed=parsed)


def no_usable_question(path: Path, problems: list[str]) -> TestSetError:
    """The error for a test set without one usable question, naming the first refused rows."""
    shown = "; ".join(problems[:3]) or "the file holds no row"
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return TestSetError(f"test set {path} has no usable example; refused rows: {shown}{more}. Expected rows with "
                        "messages (user + assistant), question/answer, instruction/output or text/label, or "
                        "SQuAD-format JSON.")
