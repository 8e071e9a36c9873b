"""Durable store of served answers and user feedback (SQLite in WAL mode), and its export as seed data.

Requests and responses are stored PII-redacted: the store must be shareable with the people who review answers.
A row is committed before the HTTP response is sent, so a crash (even `kill -9`) after a reply loses nothing.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

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


def _identity(text: str) -> str:
    return text


class FeedbackStore:
    def __init__(self, path: Path, redact: Callable[[str], str] | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.redact = redact or _identity
        self._local = threading.local()
        with self._conn() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)

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

    def add_feedback(self, response_id: str, rating: int, correction: str | None, comment: str | None) -> int:
        with self._conn() as conn:
            if conn.execute("SELECT 1 FROM responses WHERE id=?", (response_id,)).fetchone() is None:
                raise KeyError(response_id)
            cur = conn.execute(
                "INSERT INTO feedback (response_id, created, rating, correction, comment) VALUES (?,?,?,?,?)",
                (response_id, time.time(), rating, self.redact(correction) if correction else None,
                 self.redact(comment) if comment else None))
            return int(cur.lastrowid)

    def counts(self) -> dict[str, int]:
        conn = self._conn()
        return {"responses": conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0],
                "feedback": conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]}

    def rated(self) -> Iterator[dict[str, Any]]:
        """Every feedback row joined with its response, oldest first."""
        rows = self._conn().execute(
            "SELECT f.response_id, f.rating, f.correction, r.model, r.request, r.response, f.created "
            "FROM feedback f JOIN responses r ON r.id = f.response_id ORDER BY f.id")
        for rid, rating, correction, model, request, response, created in rows:
            yield {"response_id": rid, "rating": rating, "correction": correction, "model": model,
                   "messages": json.loads(request), "response": response, "created": created}


def export_seed_examples(store: FeedbackStore, out_path: Path, *, min_rating: int = 1) -> dict[str, int]:
    """Turn feedback into seed examples for the next run: corrections always, well-rated answers as they are.

    The latest feedback on a response wins; answers rated below ``min_rating`` without a correction are left out
    (they say what is wrong, not what is right).
    """
    latest: dict[str, dict[str, Any]] = {}
    for row in store.rated():
        latest[row["response_id"]] = row
    counts = {"corrected": 0, "approved": 0, "rejected_without_correction": 0}
    examples = []
    for row in latest.values():
        if row["correction"]:
            answer, counts["corrected"] = row["correction"], counts["corrected"] + 1
        elif row["rating"] >= min_rating:
            answer, counts["approved"] = row["response"], counts["approved"] + 1
        else:
            counts["rejected_without_correction"] += 1
            continue
        user = [m for m in row["messages"] if m["role"] == "user"]
        if not user:
            continue
        question = user[-1]["content"]
        examples.append({
            "id": f"fb-{row['response_id']}",
            "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
            "meta": {"kind": "seed", "task": "qa", "source": "feedback", "doc_id": None, "chunk_ids": [],
                     "generator": "seed:feedback", "parent_id": None, "question": question, "answer": answer,
                     "served_model": row["model"], "rating": row["rating"]},
        })
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as fh:
        for ex in examples:
            fh.write(json.dumps(ex, ensure_ascii=False) + "\n")
    counts["exported"] = len(examples)
    return counts
