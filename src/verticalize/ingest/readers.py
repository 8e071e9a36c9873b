"""Readers, one per file format, registered by extension: bytes in, raw documents (text per page) out.

A reader raises CorruptFileError (or its subclass EncryptedFileError) when the format library cannot read the
file, BinaryContentError (encoding.py) when a text format holds binary data. Headings are written as markdown
``#`` lines whatever the source format, so the chunker sees one structure language. Files that hold many records
(JSONL, CSV with a text column) give one document per record.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from verticalize.encoding import decode_bytes



class CorruptFileError(ValueError):
    """The file's format library cannot read it."""


class EncryptedFileError(CorruptFileError):
    """The file is password-protected."""


@dataclass
class RawDocument:
    pages: list[str]
    title: str = ""
    part: str | None = None  # record key inside a multi-record file ("L12"), None for a whole file
    paged: bool = False      # pages are real pages (PDF): boilerplate removal and line unwrapping apply


@dataclass
class ReadResult:
    documents: list[RawDocument]
    encoding: str | None = None
    warnings: list[str] = field(default_factory=list)


Reader = Callable[[bytes], ReadResult]
READERS: dict[str, Reader] = {}

# Record fields that hold a document's body / title (JSONL keys, CSV headers), case-insensitive.
TEXT_FIELDS = ("text", "content", "body", "passage", "context", "document", "正文", "内容", "文本")
TITLE_FIELDS = ("title", "heading", "name", "标题", "题目")


def register_reader(*extensions: str) -> Callable[[Reader], Reader]:
    """Register ``fn`` as the reader for these extensions (".txt"); a later registration replaces an earlier one."""

    def deco(fn: Reader) -> Reader:
        for ext in extensions:
            READERS[ext.lower()] = fn
        return fn

    return deco


def reader_for(extension: str) -> Reader | None:
    return READERS.get(extension.lower())


# --------------------------------------------------------------------------------------------- plain text
@register_reader(".txt", ".md", ".markdown", ".text")
def read_text(data: bytes) -> ReadResult:
    text, encoding = decode_bytes(data)
    pages = text.split("\f")  # form feeds mark pages in text exported from paged documents
    return ReadResult([RawDocument(pages, paged=len(pages) > 1)], encoding)


# --------------------------------------------------------------------------------------------- html
_DROP_TAGS = ["script", "style", "noscript", "nav", "header", "footer", "aside", "form", "template", "svg", "iframe"]
_BLOCK_TAGS = ["p", "div", "section", "article", "blockquote", "pre", "table", "ul", "ol", "dl", "main", "figure"]
_LINE_TAGS = ["li", "tr", "dt", "dd", "caption", "figcaption"]


@register_reader(".html", ".htm", ".xhtml")
def read_html(data: bytes) -> ReadResult:
    from bs4 import BeautifulSoup

    text, encoding = decode_bytes(data)
    soup = BeautifulSoup(text, "lxml")
    for tag in soup(_DROP_TAGS):
        tag.decompose()
    title = ""
    if soup.title is not None:
        title = soup.title.get_text(" ", strip=True)
        soup.title.decompose()
    for heading in soup.find_all(re.compile(r"^h[1-6]$")):
        level = int(heading.name[1])
        heading.replace_with(f"\n\n{'#' * level} {heading.get_text(' ', strip=True)}\n\n")
    for br in soup.find_all("br"):
        br.replace_with("\n")
    for cell in soup.find_all(["td", "th"]):
        cell.insert_after(" ")
    for tag in soup.find_all(_LINE_TAGS):
        tag.insert_before("\n")
        tag.insert_after("\n")
    for tag in soup.find_all(_BLOCK_TAGS):
        tag.insert_before("\n\n")
        tag.insert_after("\n\n")
    return ReadResult([RawDocument([soup.get_text()], title=title)], encoding)


# --------------------------------------------------------------------------------------------- pdf
@register_reader(".pdf")
def read_pdf(data: bytes) -> ReadResult:
    from pypdf import PdfReader

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # a broken file is reported once, by us
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise EncryptedFileError("the PDF is password-protected; decrypt it first (e.g. qpdf --decrypt)")
        pages = [page.extract_text() or "" for page in reader.pages]
        title = str((reader.metadata or {}).get("/Title") or "")
    except CorruptFileError:
        raise
    except Exception as e:  # pypdf raises many types on damaged files; all mean the same to the user
        raise CorruptFileError(f"cannot read PDF: {type(e).__name__}: {e}") from None
    return ReadResult([RawDocument(pages, title=title, paged=True)])


# --------------------------------------------------------------------------------------------- docx
_HEADING_STYLE = re.compile(r"^(?:heading|标题)\s*(\d)$", re.IGNORECASE)


@register_reader(".docx")
def read_docx(data: bytes) -> ReadResult:
    import docx
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
        lines: list[str] = []
        for block in document.iter_inner_content():
            if isinstance(block, Table):
                lines.extend(_docx_table_rows(block))
                continue
            text = block.text.strip()
            if not text:
                continue
            style = (block.style.name if block.style is not None else "") or ""
            match = _HEADING_STYLE.match(style.strip())
            if match:
                lines.append(f"{'#' * int(match.group(1))} {text}")
            elif style.strip().lower() == "title":
                lines.append(f"# {text}")
            else:
                lines.append(text)
        title = document.core_properties.title or ""
    except Exception as e:  # python-docx raises zip/XML/key errors on damaged files
        raise CorruptFileError(f"cannot read DOCX: {type(e).__name__}: {e}") from None
    return ReadResult([RawDocument(["\n\n".join(lines)], title=title)])


def _docx_table_rows(table: Any) -> list[str]:
    rows = []
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:  # merged cells repeat; keep each text once per row
            text = cell.text.strip()
            if text and (not cells or cells[-1] != text):
                cells.append(text)
        if cells:
            rows.append(" | ".join(cells))
    return rows


# --------------------------------------------------------------------------------------------- records
def _find_field(keys: list[str], names: tuple[str, ...]) -> str | None:
    lowered = {k.strip().lower(): k for k in keys}
    for name in names:
        if name in lowered:
            return lowered[name]
    return None


def _render_record(record: dict[str, Any]) -> str:
    return "; ".join(f"{k}: {v}" for k, v in record.items() if v not in (None, ""))


def _records_to_documents(records: list[tuple[int, dict[str, Any]]]) -> list[RawDocument]:
    """One document per record when records have a text field, else one document with a paragraph per record."""
    keys = list(records[0][1]) if records else []
    text_key = _find_field(keys, TEXT_FIELDS)
    if text_key is None:
        return [RawDocument(["\n\n".join(_render_record(r) for _, r in records)])]
    title_key = _find_field(keys, TITLE_FIELDS)
    docs = []
    for line_no, record in records:
        body = record.get(text_key)
        if isinstance(body, str) and body.strip():
            title = str(record.get(title_key) or "") if title_key else ""
            docs.append(RawDocument([body], title=title, part=f"L{line_no}"))
    return docs


@register_reader(".jsonl", ".ndjson")
def read_jsonl(data: bytes) -> ReadResult:
    text, encoding = decode_bytes(data)
    records: list[tuple[int, dict[str, Any]]] = []
    bad: list[int] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            bad.append(line_no)
            continue
        records.append((line_no, value if isinstance(value, dict) else {"text": str(value)}))
    if bad and not records:
        raise CorruptFileError(f"no line is valid JSON (first bad line: {bad[0]})")
    warnings = [f"{len(bad)} malformed JSON line(s) skipped: {_line_list(bad)}"] if bad else []
    return ReadResult(_records_to_documents(records), encoding, warnings)


@register_reader(".csv", ".tsv")
def read_csv(data: bytes) -> ReadResult:
    text, encoding = decode_bytes(data)
    try:
        dialect: Any = csv.Sniffer().sniff(text[:8192], delimiters=",\t;|")
    except csv.Error:
        dialect = csv.excel
    csv.field_size_limit(1 << 30)
    try:
        rows = list(csv.reader(io.StringIO(text), dialect))
    except csv.Error as e:
        raise CorruptFileError(f"cannot parse CSV: {e}") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        return ReadResult([RawDocument([""])], encoding)
    header, body = rows[0], rows[1:]
    records = [(i + 2, {h or f"column{j + 1}": v for j, (h, v) in enumerate(zip(header, row))})
               for i, row in enumerate(body)]
    return ReadResult(_records_to_documents(records), encoding)


def _line_list(lines: list[int], limit: int = 10) -> str:
    shown = ", ".join(str(n) for n in lines[:limit])
    return shown + (f" and {len(lines) - limit} more" if len(lines) > limit else "")
