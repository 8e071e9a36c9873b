"""Cleaning of extracted text: normalisation, page furniture (repeated headers/footers, page numbers), and
re-joining of lines that a PDF wrapped inside a sentence."""

from __future__ import annotations

import re
from collections import Counter

from verticalize.text import is_cjk, normalize

_DIGITS = re.compile(r"\d+")
_PAGE_NUMBER = re.compile(
    r"^(?:[-–—_\s]*\d{1,4}[-–—_\s]*"
    r"|第\s*\d{1,4}\s*页(?:\s*[,，/]?\s*共\s*\d{1,4}\s*页)?"
    r"|(?:page|p\.)\s*\d{1,4}(?:\s*(?:of|/)\s*\d{1,4})?"
    r"|\d{1,4}\s*/\s*\d{1,4})$",
    re.IGNORECASE,
)
# Lines that begin a structure: never glued to the line before.
STRUCTURE_START = re.compile(
    r"^(?:#{1,6}\s|第[一二三四五六七八九十百千零〇两\d]+[编章节条款部分]|[一二三四五六七八九十]+、|[（(][一二三四五六七八九十\d]+[）)]"
    r"|\d+(?:\.\d+)*[.、)）]\s*|[-*•·●▪]\s)"
)
_LINE_END = tuple("。！？；：:.!?;」』”\"）)】")


def strip_boilerplate(pages: list[str], min_pages: int = 3, share: float = 0.5) -> tuple[list[str], int]:
    """Remove lines that repeat on at least ``share`` of the pages (headers, footers) and page-number lines.

    Lines are compared with digits masked, so "Page 3" and "Page 4" count as the same line. Needs at least
    ``min_pages`` pages for repetition (fewer pages give no evidence); page numbers go whenever there are 2 pages.
    Returns (pages, number of lines removed).
    """
    if len(pages) < 2:
        return pages, 0

    def key(line: str) -> str:
        # Short lines only get digits masked (page headers/footers are short); longer lines must match exactly.
        line = line.strip()
        return _DIGITS.sub("#", line) if len(line) <= 40 else line

    repeated: set[str] = set()
    if len(pages) >= min_pages:
        seen = Counter(k for page in pages for k in {key(line) for line in page.splitlines() if line.strip()})
        threshold = max(2, int(len(pages) * share + 0.5))
        repeated = {k for k, n in seen.items() if n >= threshold}
    removed = 0
    out = []
    for page in pages:
        kept = []
        for line in page.splitlines():
            stripped = line.strip()
            if stripped and (key(line) in repeated or _PAGE_NUMBER.match(stripped)):
                removed += 1
                continue
            kept.append(line)
        out.append("\n".join(kept))
    return out, removed


def unwrap_lines(text: str) -> str:
    """Join lines a PDF wrapped mid-sentence: a line that does not end a sentence continues on the next line,
    unless the next line starts a heading, article, list item or paragraph (blank line). CJK joins without a
    space, Latin with one; a hyphen at a Latin line end is a word break."""
    lines = text.split("\n")
    out: list[str] = []
    for line in lines:
        stripped = line.strip()
        if out and stripped and out[-1] and _continues(out[-1], stripped):
            prev = out[-1]
            if prev.endswith("-") and len(prev) > 1 and prev[-2].isalpha() and stripped[0].islower():
                out[-1] = prev[:-1] + stripped
            elif is_cjk(prev[-1]) or is_cjk(stripped[0]):
                out[-1] = prev + stripped
            else:
                out[-1] = prev + " " + stripped
        else:
            out.append(stripped)
    return "\n".join(out)


def _continues(prev: str, line: str) -> bool:
    # Short lines are titles or list entries rather than wrapped prose.
    return len(prev) >= 15 and not prev.endswith(_LINE_END) and not STRUCTURE_START.match(line) \
        and not prev.startswith("#")


def clean_pages(pages: list[str], *, paged: bool, strip_furniture: bool) -> tuple[str, int]:
    """Pages of extracted text -> one cleaned document text, and the number of boilerplate lines removed."""
    pages = [normalize(p) for p in pages]
    removed = 0
    if strip_furniture and paged:
        pages, removed = strip_boilerplate(pages)
    if paged:
        pages = [unwrap_lines(p) for p in pages]
    return normalize("\n\n".join(p for p in pages if p.strip())), removed
