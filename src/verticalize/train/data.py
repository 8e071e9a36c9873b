"""Training examples: chat rows (``messages`` JSONL) and plain text (corpus chunks) → token ids + loss masks.

A chat example is rendered with the base model's chat template, the project's system prompt first. The loss mask
marks the assistant turns only: SmolLM2's template has no ``{% generation %}`` markers, so the assistant spans
are found by rendering each prefix with ``add_generation_prompt`` and comparing character offsets, then mapped to
tokens through the fast tokenizer's offsets. Rows that cannot be used are returned with their reason; the rest
goes on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from verticalize.errors import UserError


class TrainError(UserError, ValueError):
    """Training cannot run with this input or setting; the message says what and where, and what to change."""


class DatasetFileError(UserError, FileNotFoundError):
    """A dataset file the training stage needs is missing; the message says which stage writes it."""


@dataclass
class Example:
    """One training example: token ids and, per token, whether the model is trained to predict it."""

    id: str
    input_ids: list[int]
    loss_mask: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def n_targets(self) -> int:
        # The first token is never predicted (nothing precedes it inside its own packed segment).
        return sum(self.loss_mask[1:])


@dataclass
class LoadReport:
    """What happened to each input row: kept, refused (with reasons), truncated, or meant for another task."""

    path: str
    kept: int = 0
    truncated: int = 0
    other_task: int = 0
    refused: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "kept": self.kept, "truncated": self.truncated, "other_task": self.other_task,
                "refused": len(self.refused), "refused_examples": self.refused[:20]}


def _rows(path: Path, report: LoadReport) -> Iterator[tuple[int, dict[str, Any]]]:
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                report.refused.append(f"{path}:{lineno}: not valid JSON ({e.msg})")
                continue
            if not isinstance(row, dict):
                report.refused.append(f"{path}:{lineno}: a row must be a JSON object, got {type(row).__name__}")
                continue
            yield lineno, row


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise DatasetFileError(f"{what} not found: {path}")


def _check_messages(messages: Any) -> str | None:
    """None when ``messages`` is a usable chat, else the reason it is not."""
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list"
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            return f"messages[{i}] needs a role of system, user or assistant"
        if not isinstance(m.get("content"), str):
            return f"messages[{i}].content must be a string"
    if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
        return "no non-empty assistant message to learn from"
    return None


class ChatEncoder:
    """Renders chats with the tokenizer's template and builds assistant-only (or full) loss masks."""

    def __init__(self, tokenizer: Any, system_prompt: str | None, max_len: int, assistant_only: bool = True):
        if not getattr(tokenizer, "is_fast", False):
            raise TrainError("training needs a fast tokenizer (token offsets are used to find assistant turns)")
        if not getattr(tokenizer, "chat_template", None):
            raise TrainError("the base model's tokenizer has no chat template: SFT needs one (set "
                             "tokenizer.chat_template in the model directory)")
        self.tok = tokenizer
        self.system_prompt = system_prompt
        self.max_len = max_len
        self.assistant_only = assistant_only

    def _render(self, messages: list[dict[str, str]], generation_prompt: bool) -> str:
        return self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)

    def encode(self, messages: list[dict[str, str]]) -> tuple[list[int], list[int], bool]:
        """(input_ids, loss_mask, truncated)."""
        msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
        if self.system_prompt and msgs[0]["role"] != "system":
            msgs = [{"role": "system", "content": self.system_prompt}] + msgs
        text = self._render(msgs, False)
        spans: list[tuple[int, int]] = []
        for i, m in enumerate(msgs):
            if m["role"] != "assistant":
                continue
            prompt = self._render(msgs[:i], True)
            upto = self._render(msgs[: i + 1], False)
            if not (text.startswith(prompt) and text.startswith(upto)):
                raise TrainError("the chat template does not render conversations prefix by prefix; assistant-only "
                                 "loss cannot be computed (set train.assistant_only_loss=false)")
            spans.append((len(prompt), len(upto)))
        enc = self.tok(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        if self.assistant_only:
            mask = [int(any(s <= a < e for s, e in spans)) for a, _ in enc["offset_mapping"]]
        else:
            mask = [1] * len(ids)
        truncated = len(ids) > self.max_len
        return ids[: self.max_len], mask[: self.max_len], truncated

    def encode_text(self, text: str) -> tuple[list[int], list[int], bool]:
        ids = self.tok(text, add_special_tokens=False)["input_ids"]
        if self.tok.eos_token_id is not None:
            ids = list(ids) + [self.tok.eos_token_id]
        truncated = len(ids) > self.max_len
        ids = ids[: self.max_len]
        return ids, [1] * len(ids), truncated


def _accepts(task: str, row: dict[str, Any]) -> bool:
    """Stage task 'classification' trains on classification rows; 'sft' on everything else."""
    meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
    is_cls = meta.get("task") == "classification"
    return is_cls if task == "classification" else not is_cls


def load_chat_examples(path: str | Path, encoder: ChatEncoder, task: str = "sft") -> tuple[list[Example],
                                                                                          LoadReport]:
    """Examples from a ``messages`` JSONL file; rows meant for another task form are counted, not used."""
    path = Path(path)
    _require_file(path, "dataset file")
    report = LoadReport(str(path))
    examples: list[Example] = []
    for lineno, row in _rows(path, report):
        if not _accepts(task, row):
            report.other_task += 1
            continue
        reason = _check_messages(row.get("messages"))
        if reason:
            report.refused.append(f"{path}:{lineno}: {reason}")
            continue
        ids, mask, truncated = encoder.encode(row["messages"])
        if sum(mask[1:]) == 0:
            report.refused.append(f"{path}:{lineno}: the assistant answer lies beyond model.max_seq_len "
                                  f"({encoder.max_len} tokens) after truncation")
            continue
        report.truncated += truncated
        examples.append(Example(str(row.get("id") or f"{path.name}:{lineno}"), ids, mask))
        report.kept += 1
    return examples, report


def load_text_examples(path: str | Path, encoder: ChatEncoder) -> tuple[list[Example], LoadReport]:
    """Plain causal-LM examples (every token trained) from JSONL rows with a 'text' field (ingest chunks)."""
    path = Path(path)
    _require_file(path, "corpus file (written by `verticalize ingest`)")
    report = LoadReport(str(path))
    examples: list[Example] = []
    for lineno, row in _rows(path, report):
        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            report.refused.append(f"{path}:{lineno}: no non-empty 'text' field")
            continue
        ids, mask, truncated = encoder.encode_text(text)
        if len(ids) < 2:
            report.refused.append(f"{path}:{lineno}: text too short to train on")
            continue
        report.truncated += truncated
        examples.append(Example(str(row.get("id") or f"{path.name}:{lineno}"), ids, mask))
        report.kept += 1
    return examples, report


def holdout_split(examples: list[Example], share: float = 0.05) -> tuple[list[Example], list[Example]]:
    """A stable validation hold-out by id hash, for sources without their own validation file."""
    def bucket(ex: Example) -> float:
        return int(hashlib.sha256(ex.id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF

    val = [e for e in examples if bucket(e) < share]
    if not val and len(examples) >= 4:
        val = [min(examples, key=bucket)]
    val_ids = {id(e) for e in val}
    return [e for e in examples if id(e) not in val_ids], val
