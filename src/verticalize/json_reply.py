"""Robust parsing of JSON that a chat model was asked to produce.

Models wrap JSON in reasoning (``<think>…</think>``), code fences and chatter before or after it, and sometimes
write Python-style objects (single quotes, trailing commas, True/None). ``parse_json_reply`` removes the wrapping,
finds the first complete JSON object/array and parses it strictly first, then with the safe repairs only:
trailing commas dropped, and Python-literal syntax read by ``ast.literal_eval`` (no code is ever executed).
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_UNCLOSED_THINK = re.compile(r"^.*?</think>", re.DOTALL | re.IGNORECASE)  # reasoning whose opening tag was cut
_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
_JSON_WORDS = {"true": "True", "false": "False", "null": "None"}


class ReplyParseError(ValueError):
    """The reply holds no parseable JSON; ``reply`` keeps the raw text (shortened) for the report."""

    def __init__(self, message: str, reply: str):
        super().__init__(message)
        self.reply = reply[:500]


def strip_reasoning(text: str) -> str:
    """Remove ``<think>…</think>`` blocks (and a dangling reasoning prefix ending in ``</think>``)."""
    text = _THINK_BLOCK.sub("", text)
    if "</think>" in text.lower():
        text = _UNCLOSED_THINK.sub("", text, count=1)
    return text.strip()


class _StringLiterals:
    """Follows string literals (either quote style, backslash escapes) through text read one character at a time,
    so brackets and words inside a string are not taken for JSON structure."""

    def __init__(self) -> None:
        self.quote, self.escaped = "", False

    def inside(self, ch: str) -> bool:
        """True when ``ch`` belongs to an open string literal (its closing quote included)."""
        if not self.quote:
            return False
        if self.escaped:
            self.escaped = False
        elif ch == "\\":
            self.escaped = True
        elif ch == self.quote:
            self.quote = ""
        return True

    def open(self, quote: str) -> None:
        self.quote = quote


def _balanced_spans(text: str) -> list[str]:
    """Every top-level ``{…}``/``[…]`` span, scanning brackets outside string literals (either quote style)."""
    spans: list[str] = []
    depth, start, strings = 0, -1, _StringLiterals()
    for i, ch in enumerate(text):
        if strings.inside(ch):
            continue
        if ch in "\"'" and depth > 0:  # quotes in chatter around the JSON ("Here's …") open nothing
            strings.open(ch)
        elif ch in "{[":
            if depth == 0:
                start = i
            depth += 1
        elif ch in "}]" and depth > 0:
            depth -= 1
            if depth == 0:
                spans.append(text[start:i + 1])
    return spans


def _python_literal(candidate: str) -> Any:
    """Read JSON-ish text as a Python literal: bare true/false/null outside strings become True/False/None."""
    out, word, strings = [], [], _StringLiterals()

    def flush() -> None:
        token = "".join(word)
        out.append(_JSON_WORDS.get(token, token))
        word.clear()

    for ch in candidate:
        if strings.inside(ch):
            out.append(ch)
            continue
        if ch.isalpha():
            word.append(ch)
            continue
        flush()
        if ch in "\"'":
            strings.open(ch)
        out.append(ch)
    flush()
    return ast.literal_eval("".join(out))


def _parse_candidate(candidate: str) -> Any:
    for attempt in (lambda s: json.loads(s), lambda s: json.loads(_TRAILING_COMMA.sub(r"\1", s)), _python_literal):
        try:
            value = attempt(candidate)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(value, (dict, list)):
            return value
    raise ValueError("not JSON")


def parse_json_reply(text: str) -> Any:
    """The first JSON object or array in a model reply. Raises ReplyParseError when there is none."""
    if not isinstance(text, str) or not text.strip():
        raise ReplyParseError("empty reply", text or "")
    body = strip_reasoning(text)
    candidates = [m.group(1).strip() for m in _FENCE.finditer(body)]
    candidates.append(body)
    for candidate in candidates:
        for span in _balanced_spans(candidate) or [candidate]:
            try:
                return _parse_candidate(span)
            except ValueError:
                continue
    raise ReplyParseError(f"no JSON object in the reply: {body[:120]!r}", text)
