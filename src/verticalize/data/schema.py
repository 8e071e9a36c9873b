"""The dataset example: one row of ``RUN/data/{train,validation,test}.jsonl`` and the helpers to build/read it.

An example is OpenAI-style ``messages`` (user then assistant; no system turn: training and evaluation prepend
``project.system_prompt``) plus a ``meta`` dict carrying provenance — kind, task, source document and chunk ids,
generator, parent id — and the question/answer in plain form so later stages never parse messages.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable

KINDS = ("seed", "synthetic", "augmented")
TASKS = ("qa", "classification")
SPLITS = ("train", "validation", "test")


def stable_id(prefix: str, *parts: Any) -> str:
    """A short id that depends only on ``parts`` (so a rebuild gives the same ids)."""
    blob = "\x1f".join(str(p) for p in parts).encode("utf-8")
    return f"{prefix}-{hashlib.sha1(blob).hexdigest()[:12]}"


def make_example(question: str, answer: str, *, kind: str, generator: str, task: str = "qa",
                 chunk: dict[str, Any] | None = None, source: str | None = None, doc_id: str | None = None,
                 chunk_ids: Iterable[str] = (), parent_id: str | None = None, label: str | None = None,
                 id: str | None = None, messages: list[dict[str, str]] | None = None,
                 **extra_meta: Any) -> dict[str, Any]:
    """Build a contract-conforming example. ``messages`` defaults to one user/assistant turn.

    ``chunk`` (a row of ``chunks.jsonl`` the pair was made from) gives the provenance: its source, doc id and id
    replace ``source``, ``doc_id`` and ``chunk_ids``. Without ``id``, the id is a hash of the provenance,
    generator, question and answer, so a rebuild from the same input gives the same ids in any order.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if chunk is not None:
        source, doc_id = chunk.get("source"), chunk.get("doc_id")
        chunk_ids = [chunk["id"]] if chunk.get("id") else []
    chunk_ids = list(chunk_ids)
    meta: dict[str, Any] = {"kind": kind, "task": task, "source": source, "doc_id": doc_id,
                            "chunk_ids": chunk_ids, "generator": generator, "parent_id": parent_id,
                            "question": question, "answer": answer}
    if task == "classification":
        meta["label"] = label if label is not None else answer
    meta.update(extra_meta)
    return {
        "id": id or stable_id(kind[:4], generator, source, doc_id, ",".join(chunk_ids), question, answer),
        "messages": messages or [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
        "meta": meta,
    }


def question_of(example: dict[str, Any]) -> str:
    """The (last) user question of an example, from meta or, failing that, from its messages."""
    return _last_turn(example, "question", "user")


def answer_of(example: dict[str, Any]) -> str:
    """The (last) assistant answer of an example, from meta or, failing that, from its messages."""
    return _last_turn(example, "answer", "assistant")


def _last_turn(example: dict[str, Any], meta_key: str, role: str) -> str:
    meta = example.get("meta") or {}
    if isinstance(meta.get(meta_key), str):
        return meta[meta_key]
    turns = [m.get("content", "") for m in example.get("messages", []) if m.get("role") == role]
    return turns[-1] if turns else ""


def kind_of(example: dict[str, Any]) -> str:
    return str((example.get("meta") or {}).get("kind") or "synthetic")


def problem_with(example: Any) -> str | None:
    """Why ``example`` does not follow the contract, or None when it does (used on rows we did not write)."""
    if not isinstance(example, dict):
        return f"expected a JSON object, got {type(example).__name__}"
    messages = example.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list"
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            return f"messages[{i}] must be an object with a string 'content'"
        if m.get("role") not in ("user", "assistant"):
            return f"messages[{i}].role must be user or assistant, got {m.get('role')!r}"
    if messages[-1]["role"] != "assistant":
        return "the last message must be the assistant's answer"
    if not question_of(example).strip() or not answer_of(example).strip():
        return "empty question or answer"
    meta = example.get("meta")
    if meta is not None:
        if not isinstance(meta, dict):
            return "'meta' must be an object"
        if meta.get("kind", "synthetic") not in KINDS:
            return f"meta.kind must be one of {', '.join(KINDS)}, got {meta.get('kind')!r}"
        if meta.get("task", "qa") not in TASKS:
            return f"meta.task must be one of {', '.join(TASKS)}, got {meta.get('task')!r}"
        if not isinstance(meta.get("chunk_ids", []), list):
            return "meta.chunk_ids must be a list"
    if not isinstance(example.get("id"), str) or not example["id"]:
        return "missing string 'id'"
    return None
