"""The user's glossary for augmentation: entity replacements and synonyms, from CSV or JSON.

CSV: ``term,replacement[,kind]`` (a header row naming ``term`` is optional); ``kind`` is ``entity`` (default) or
``synonym``; a synonym row may list several alternatives separated by ``|``.
JSON: ``{"entities": {term: replacement}, "synonyms": {term: [alternatives] or "a|b"}}``, a list of
``{"term", "replacement", "kind"}`` objects, or a flat ``{term: replacement}`` object (entities).

Entity replacement swaps a real name for a fictional one consistently in question and answer, so the pair stays
true of the (fictional) entity; synonyms are symmetric (a row "借款人,贷款人" lets each stand for the other).
Malformed rows are skipped and counted (``skipped_rows`` with line numbers); an unreadable file is an error.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from verticalize.config import ConfigError

_KINDS = ("entity", "synonym")


class GlossaryError(ConfigError):
    """A glossary file that cannot be read at all; the message names the file and the problem."""


@dataclass
class Glossary:
    entities: dict[str, str] = field(default_factory=dict)
    synonyms: dict[str, list[str]] = field(default_factory=dict)
    skipped_rows: list[str] = field(default_factory=list)  # "file:line: reason"

    def add(self, term: str, replacement: str, kind: str) -> None:
        if kind == "entity":
            self.entities[term] = replacement
            return
        alternatives = [a.strip() for a in replacement.split("|") if a.strip()]
        group = [term] + alternatives
        for word in group:
            others = [w for w in group if w != word]
            known = self.synonyms.setdefault(word, [])
            known.extend(w for w in others if w not in known)


def load_glossary(path: str | Path) -> Glossary:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"glossary file not found: {p} (data.augment.glossary)")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise GlossaryError(f"glossary {p} is not UTF-8 text: {e}") from None
    if p.suffix.lower() == ".json":
        return _from_json(text, p)
    return _from_csv(text, p)


def _from_csv(text: str, p: Path) -> Glossary:
    glossary = Glossary()
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [c.strip() for c in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if lineno == 1 and cells[0].lower() == "term":
            continue
        _add_row(glossary, cells[0] if cells else "", cells[1] if len(cells) > 1 else "",
                 cells[2].lower() if len(cells) > 2 and cells[2] else "entity", f"{p}:{lineno}")
    return glossary


def _from_json(text: str, p: Path) -> Glossary:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise GlossaryError(f"glossary {p} is not valid JSON: {e}") from None
    glossary = Glossary()
    if isinstance(data, dict) and ({"entities", "synonyms"} & set(data)):
        for kind, key in (("entity", "entities"), ("synonym", "synonyms")):
            section = data.get(key) or {}
            if not isinstance(section, dict):
                raise GlossaryError(f"glossary {p}: '{key}' must be an object of term: value")
            for term, value in section.items():
                value = "|".join(value) if isinstance(value, list) else value
                _add_row(glossary, term, value, kind, f"{p}:{key}.{term}")
    elif isinstance(data, dict):
        for term, value in data.items():
            _add_row(glossary, term, value, "entity", f"{p}:{term}")
    elif isinstance(data, list):
        for i, row in enumerate(data):
            if not isinstance(row, dict):
                glossary.skipped_rows.append(f"{p}:[{i}]: expected an object with term and replacement")
                continue
            value = row.get("replacement")
            value = "|".join(value) if isinstance(value, list) else value
            _add_row(glossary, row.get("term"), value, str(row.get("kind") or "entity").lower(), f"{p}:[{i}]")
    else:
        raise GlossaryError(f"glossary {p} must hold an object or a list, got {type(data).__name__}")
    return glossary


def _add_row(glossary: Glossary, term: object, replacement: object, kind: str, where: str) -> None:
    if not isinstance(term, str) or not term.strip():
        glossary.skipped_rows.append(f"{where}: empty term")
    elif not isinstance(replacement, str) or not replacement.strip():
        glossary.skipped_rows.append(f"{where}: term '{term}' has no replacement")
    elif kind not in _KINDS:
        glossary.skipped_rows.append(f"{where}: kind '{kind}' is not one of {', '.join(_KINDS)}")
    elif term.strip() == replacement.strip():
        glossary.skipped_rows.append(f"{where}: term '{term}' is replaced by itself")
    else:
        glossary.add(term.strip(), replacement.strip(), kind)


def term_pattern(terms: list[str]) -> re.Pattern[str] | None:
    """One regex matching any term, longest first; ASCII terms only as whole words ("fee" not in "coffee")."""
    if not terms:
        return None
    parts = []
    for term in sorted(terms, key=lambda t: (-len(t), t)):
        escaped = re.escape(term)
        if re.match(r"\w", term, re.ASCII):
            escaped = r"(?<![A-Za-z0-9_])" + escaped
        if re.search(r"\w$", term, re.ASCII):
            escaped += r"(?![A-Za-z0-9_])"
        parts.append(escaped)
    return re.compile("|".join(parts))
