"""Durable store of served answers and user feedback (SQLite in WAL mode), its review queue, and its export.

Requests and responses are stored PII-redacted: the store must be shareable with the people who review answers.
A row is committed before the HTTP response is sent, so a crash (even `kill -9`) after a reply loses nothing.

Feedback is untrusted until a person reviews it: every row enters the **review queue** as ``pending`` and is
``approved`` or ``rejected`` by a reviewer (`review`, recorded with the reviewer, the time and an optional note).
Only approved rows become seed data (`export_seed_examples`). Each row records which API key sent it as a short
fingerprint (`fingerprint_key`: the first 8 hex digits of the key's SHA-256) — never the key itself.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from verticalize.artifacts import write_jsonl
from verticalize.config import DataConfig
from verticalize.data.dedup import TestQuestions

PENDING, APPROVED, REJECTED = "pending", "approved", "rejected"
STATUSES = (PENDING, APPROVED, REJECTED)
DECISIONS = {"approve": APPROVED, "reject": REJECTED, APPROVED: APPROVED, REJECTED: REJECTED}

SCHEMA_VERSION = 2  # PRAGMA user_version: 1 (or 0) = before the review queue, 2 = review columns + key fingerprint

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
  id TEXT PRIMARY KEY, created REAL NOT NULL, model TEXT NOT NULL, rag INTEGER NOT NULL,
  request TEXT NOT NULL, response TEXT NOT NULL, sources TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
  id INTEGER PRIMARY KEY AUTOINCREMENT, response_id TEXT NOT NULL REFERENCES responses(id),
  created REAL NOT NULL, rating INTEGER NOT NULL, correction TEXT, comment TEXT
);
CREATE INDEX IF NOT EXISTS feedback_response ON feedback(response_id);
"""

# The review queue's columns, added to a store of an older version by ALTER TABLE (its rows are kept, as pending).
REVIEW_COLUMNS = (
    ("status", f"TEXT NOT NULL DEFAULT '{PENDING}'"),
    ("reviewer", "TEXT"),
    ("reviewed_at", "REAL"),
    ("review_note", "TEXT"),
    ("key_fp", "TEXT"),           # fingerprint of the API key that sent the feedback
    ("reviewer_key_fp", "TEXT"),  # fingerprint of the API key that reviewed it (None: the CLI)
)

_ROW = ("f.id, f.response_id, f.created, f.rating, f.correction, f.comment, f.status, f.reviewer, f.reviewed_at, "
        "f.review_note, f.key_fp, f.reviewer_key_fp, r.model, r.request, r.response")


def fingerprint_key(key: str | None) -> str | None:
    """A short, non-reversible name for an API key: the first 8 hex digits of its SHA-256 (None for no key)."""
    if not key:
        return None
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]


def _identity(text: str) -> str:
    return text


class FeedbackStore:
    def __init__(self, path: Path, redact: Callable[[str], str] | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.redact = redact or _identity
        self._local = threading.local()
        # Stores of runs served before a reload: feedback on a response one of them recorded still lands here.
        self.previous: list[FeedbackStore] = []
        with self._conn() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)
            self._migrate(conn)

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        """Bring a store of an older version up to this one in place, keeping every row (old feedback: pending)."""
        have = {row[1] for row in conn.execute("PRAGMA table_info(feedback)")}
        for name, decl in REVIEW_COLUMNS:
            if name not in have:
                conn.execute(f"ALTER TABLE feedback ADD COLUMN {name} {decl}")
        conn.execute("CREATE INDEX IF NOT EXISTS feedback_status ON feedback(status)")
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30)
            conn.execute("PRAGMA synchronous=FULL")  # durable on commit: feedback must survive a kill -9
            self._local.conn = conn
        return conn

    def record_response(self, response_id: str, model: str, messages: list[dict[str, str]], answer: str,
                        sources: list[dict[str, Any]], rag: bool) -> None:
        request = [{"role": m["role"], "content": self.redact(m["content"])} for m in messages]
        with self._conn() as conn:
            conn.execute("INSERT OR REPLACE INTO responses VALUES (?,?,?,?,?,?,?)",
                         (response_id, time.time(), model, int(rag), json.dumps(request, ensure_ascii=False),
                          self.redact(answer), json.dumps(sources, ensure_ascii=False)))

    def _response_row(self, response_id: str) -> tuple[Any, ...] | None:
        return self._conn().execute("SELECT * FROM responses WHERE id=?", (response_id,)).fetchone()

    def add_feedback(self, response_id: str, rating: int, correction: str | None, comment: str | None,
                     key_fp: str | None = None) -> int:
        """A new pending row; ``key_fp``: the sender's `fingerprint_key`. KeyError: no such response here (nor in
        a store served before a reload, whose response row is then copied here with the feedback)."""
        with self._conn() as conn:
            if conn.execute("SELECT 1 FROM responses WHERE id=?", (response_id,)).fetchone() is None:
                earlier = next((row for s in self.previous if (row := s._response_row(response_id)) is not None),
                               None)
                if earlier is None:
                    raise KeyError(response_id)
                conn.execute("INSERT OR IGNORE INTO responses VALUES (?,?,?,?,?,?,?)", earlier)
            cur = conn.execute(
                "INSERT INTO feedback (response_id, created, rating, correction, comment, status, key_fp) "
                "VALUES (?,?,?,?,?,?,?)",
                (response_id, time.time(), rating, self.redact(correction) if correction else None,
                 self.redact(comment) if comment else None, PENDING, key_fp))
            return int(cur.lastrowid)

    # ----------------------------------------------------------------------------------------- the review queue
    def review(self, feedback_id: int, decision: str, reviewer: str, note: str | None = None,
               reviewer_key_fp: str | None = None, correction: str | None = None) -> dict[str, Any]:
        """Approve or reject one row (``decision``: approve/approved or reject/rejected); a later review replaces
        an earlier one. ``correction``: the reviewer's edit of the corrected answer (redacted like the
        original; what becomes seed data). KeyError: no such row. Returns the row as `get` does."""
        status = DECISIONS.get(decision)
        if status is None:
            raise ValueError(f"decision must be approve or reject, got {decision!r}")
        with self._conn() as conn:
            if correction is not None and correction.strip():
                conn.execute("UPDATE feedback SET correction=? WHERE id=?",
                             (self.redact(correction.strip()), int(feedback_id)))
            cur = conn.execute("UPDATE feedback SET status=?, reviewer=?, reviewed_at=?, review_note=?, "
                               "reviewer_key_fp=? WHERE id=?",
                               (status, reviewer, time.time(), self.redact(note) if note else None,
                                reviewer_key_fp, int(feedback_id)))
            if cur.rowcount == 0:
                raise KeyError(feedback_id)
        return self.get(feedback_id)

    def get(self, feedback_id: int) -> dict[str, Any]:
        row = self._conn().execute(f"SELECT {_ROW} FROM feedback f JOIN responses r ON r.id = f.response_id "
                                   "WHERE f.id=?", (int(feedback_id),)).fetchone()
        if row is None:
            raise KeyError(feedback_id)
        return _as_dict(row)

    def rows(self, status: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Feedback rows joined with their responses, oldest first; ``status``: only those (None: all)."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        sql = f"SELECT {_ROW} FROM feedback f JOIN responses r ON r.id = f.response_id"
        args: list[Any] = []
        if status is not None:
            sql, args = sql + " WHERE f.status=?", [status]
        sql += " ORDER BY f.id"
        if limit is not None:
            sql, args = sql + " LIMIT ?", [*args, int(limit)]
        return [_as_dict(row) for row in self._conn().execute(sql, args)]

    def counts(self) -> dict[str, int]:
        conn = self._conn()
        out = {"responses": conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0],
               "feedback": conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]}
        out.update({s: 0 for s in STATUSES})
        out.update(dict(conn.execute("SELECT status, COUNT(*) FROM feedback GROUP BY status").fetchall()))
        return out

    def rated(self) -> Iterator[dict[str, Any]]:
        """Every feedback row joined with its response, oldest first (every status: see ``status``)."""
        for row in self.rows():
            yield row


def _as_dict(row: tuple[Any, ...]) -> dict[str, Any]:
    (fid, rid, created, rating, correction, comment, status, reviewer, reviewed_at, note, key_fp, reviewer_key_fp,
     model, request, response) = row
    messages = json.loads(request)
    question = next((m["content"] for m in reversed(messages) if m["role"] == "user"), None)
    return {"id": fid, "response_id": rid, "created": created, "rating": rating, "correction": correction,
            "comment": comment, "status": status, "reviewer": reviewer, "reviewed_at": reviewed_at,
            "review_note": note, "key_fingerprint": key_fp, "reviewer_key_fingerprint": reviewer_key_fp,
            "model": model, "messages": messages, "question": question, "response": response}


# Feedback pairs and ratings reach training without the data stage: its decontamination rule, its default threshold.
DECONTAMINATE_THRESHOLD = DataConfig.model_fields["decontaminate_threshold"].default


def _latest_approved(store: FeedbackStore, counts: dict[str, int]) -> dict[str, dict[str, Any]]:
    """The latest APPROVED feedback row of each response (a later review wins); pending and rejected rows are only
    counted, into ``counts``."""
    latest: dict[str, dict[str, Any]] = {}
    for row in store.rows():
        if row["status"] != APPROVED:
            counts[row["status"]] = counts.get(row["status"], 0) + 1
            continue
        latest[row["response_id"]] = row
    return latest


def seed_examples(store: FeedbackStore, *, min_rating: int = 1) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The seed examples APPROVED feedback makes, and the counts of what was used and left out.

    Only approved rows are used (pending and rejected never are). The latest approved feedback on a response
    wins; its correction is the answer, or, without a correction, the served answer when it was rated at least
    ``min_rating`` (an approved low rating without a correction says what is wrong, not what is right).
    """
    counts = {"corrected": 0, "as_answered": 0, "low_rated_without_correction": 0, PENDING: 0, REJECTED: 0}
    latest = _latest_approved(store, counts)
    examples = []
    for row in latest.values():
        if row["correction"]:
            answer, counts["corrected"] = row["correction"], counts["corrected"] + 1
        elif row["rating"] >= min_rating:
            answer, counts["as_answered"] = row["response"], counts["as_answered"] + 1
        else:
            counts["low_rated_without_correction"] += 1
            continue
        question = row["question"]
        if not question:
            continue
        examples.append({
            "id": f"fb-{row['response_id']}",
            "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
            "meta": {"kind": "seed", "task": "qa", "source": "feedback", "doc_id": None, "chunk_ids": [],
                     "generator": "seed:feedback", "parent_id": None, "question": question, "answer": answer,
                     "served_model": row["model"], "rating": row["rating"], "feedback_id": row["id"],
                     "reviewer": row["reviewer"], "key_fingerprint": row["key_fingerprint"]},
        })
    return examples, counts


def export_seed_examples(store: FeedbackStore, out_path: Path, *, min_rating: int = 1) -> dict[str, int]:
    """Write the seed examples of the approved feedback (`seed_examples`) to ``out_path``; returns the counts."""
    examples, counts = seed_examples(store, min_rating=min_rating)
    write_jsonl(out_path, examples)
    counts["exported"] = len(examples)
    return counts


def preference_pairs(store: FeedbackStore, *, min_rating: int = 1, exclude_questions: Iterable[str] = (),
                     run: str | None = None, decontaminate_threshold: float = DECONTAMINATE_THRESHOLD
                     ) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Preference pairs (prompt, chosen, rejected) from the APPROVED feedback, with provenance, and the counts.

    - an answer rated below ``min_rating`` with a correction: chosen = the correction, rejected = the served answer;
    - an answer rated at least ``min_rating`` (uncorrected) to a question whose sibling answer (another response
      to the same question) was corrected: chosen = the good answer, rejected = the sibling's served answer.
    Pending and rejected feedback is never used; the latest approved feedback of a response wins. Pairs are
    deduplicated (same question, chosen and rejected), a pair whose chosen and rejected are the same text (or one
    of them empty) is dropped, and a question that duplicates one of ``exclude_questions`` (the test set's) exactly or
    nearly is left out so it cannot leak into training (the data stage's decontamination rule).
    Text was redacted when it was stored (the same rules as the documents).
    """
    counts = {"corrected": 0, "against_sibling": 0, "duplicates": 0, "same_text": 0, "empty": 0,
              "test_questions": 0, PENDING: 0, REJECTED: 0}
    latest = _latest_approved(store, counts)
    tested = TestQuestions(enumerate(exclude_questions), decontaminate_threshold)
    by_question: dict[str, list[dict[str, Any]]] = {}
    for row in latest.values():
        if row["question"]:
            by_question.setdefault(_question_key(row["question"]), []).append(row)
    pairs: list[dict[str, Any]] = []
    seen: set[tuple[str, str, str]] = set()

    def add(kind: str, good: dict[str, Any], chosen: str, bad: dict[str, Any]) -> None:
        question = good["question"]
        key = (_question_key(question), chosen.strip(), bad["response"].strip())
        if not key[1] or not key[2]:
            counts["empty"] += 1
        elif key[1] == key[2]:
            counts["same_text"] += 1
        elif tested.match(question) is not None:
            counts["test_questions"] += 1
        elif key in seen:
            counts["duplicates"] += 1
        else:
            seen.add(key)
            counts[kind] += 1
            pairs.append({
                "id": f"pref-{good['response_id']}-{bad['response_id']}",
                "prompt": [{"role": "user", "content": question}], "chosen": chosen, "rejected": bad["response"],
                "meta": {"kind": kind, "source": "feedback", "run": run, "question": question,
                         "chosen_response_id": good["response_id"], "rejected_response_id": bad["response_id"],
                         "served_model": bad["model"], "feedback_ids": sorted({good["id"], bad["id"]}),
                         "reviewer": bad["reviewer"], "key_fingerprint": bad["key_fingerprint"]}})

    for group in by_question.values():
        corrected = [r for r in group if r["correction"] and r["rating"] < min_rating]
        good = [r for r in group if not r["correction"] and r["rating"] >= min_rating]
        for bad in corrected:
            add("corrected", bad, bad["correction"], bad)
            for ok in good:
                add("against_sibling", ok, ok["response"], bad)
    counts["pairs"] = len(pairs)
    return pairs, counts


def rated_answers(store: FeedbackStore, *, min_rating: int = 1, exclude_questions: Iterable[str] = (),
                  run: str | None = None, decontaminate_threshold: float = DECONTAMINATE_THRESHOLD
                  ) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Unpaired ratings (prompt, completion, label) from the APPROVED feedback, with provenance — what a
    ``task: kto`` stage trains on — and the counts.

    - a correction: the correction is desirable (label true), and the served answer undesirable when it was rated
      below ``min_rating``;
    - no correction: the served answer is desirable when rated at least ``min_rating``, undesirable when rated
      below — the thumbs-down without a correction that gives no DPO pair.
    Pending and rejected feedback is never used; the latest approved feedback of a response wins. Rows are
    deduplicated (same question, answer and label); an answer rated both desirable and undesirable for one question
    is left out (the reviewers disagree); a question duplicating one of ``exclude_questions`` is left out (as pairs).
    """
    counts = {"desirable": 0, "undesirable": 0, "corrections": 0, "duplicates": 0, "conflicting": 0, "empty": 0,
              "test_questions": 0, PENDING: 0, REJECTED: 0}
    latest = _latest_approved(store, counts)
    tested = TestQuestions(enumerate(exclude_questions), decontaminate_threshold)
    found: dict[tuple[str, str], dict[str, Any]] = {}
    labels: dict[tuple[str, str], set[bool]] = {}
    for row in latest.values():
        question = row["question"]
        if not question:
            continue
        candidates = []
        if row["correction"]:
            candidates.append((row["correction"], True, "correction"))
            if row["rating"] < min_rating:
                candidates.append((row["response"], False, "served"))
        else:
            candidates.append((row["response"], row["rating"] >= min_rating, "served"))
        for text, label, origin in candidates:
            if not (text or "").strip():
                counts["empty"] += 1
                continue
            if tested.match(question) is not None:
                counts["test_questions"] += 1
                continue
            key = (_question_key(question), " ".join(text.split()))
            if key in found and label in labels[key]:
                counts["duplicates"] += 1
                continue
            labels.setdefault(key, set()).add(label)
            found.setdefault(key, {
                "id": f"rating-{row['response_id']}-{origin}",
                "prompt": [{"role": "user", "content": question}], "completion": text, "label": label,
                "meta": {"source": "feedback", "origin": origin, "run": run, "question": question,
                         "response_id": row["response_id"], "served_model": row["model"], "rating": row["rating"],
                         "feedback_id": row["id"], "reviewer": row["reviewer"],
                         "key_fingerprint": row["key_fingerprint"]}})
    rows = []
    for key, item in found.items():
        if len(labels[key]) > 1:
            counts["conflicting"] += 1
            continue
        rows.append(item)
        counts["desirable" if item["label"] else "undesirable"] += 1
        counts["corrections"] += item["meta"]["origin"] == "correction"
    counts["rows"] = len(rows)
    return rows, counts


def _question_key(question: str) -> str:
    return " ".join(question.lower().split())
