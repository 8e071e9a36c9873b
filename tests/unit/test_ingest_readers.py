"""Format readers: records as documents, encrypted and text-less PDFs, malformed JSONL, registry."""

from __future__ import annotations

import io
import json

import pytest

from verticalize.config import IngestConfig
from verticalize.ingest import ingest, register_reader
from verticalize.ingest.readers import CorruptFileError, EncryptedFileError, ReadResult, RawDocument, READERS
from verticalize.ingest.readers import read_csv, read_jsonl, read_pdf


def _blank_pdf(password: str | None = None) -> bytes:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    if password:
        writer.encrypt(password)
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def test_encrypted_pdf_is_refused_with_advice():
    with pytest.raises(EncryptedFileError, match="password-protected"):
        read_pdf(_blank_pdf(password="s3cret"))


def test_pdf_without_text_layer_is_reported_empty(tmp_path):
    (tmp_path / "scan.pdf").write_bytes(_blank_pdf())
    manifest = ingest([str(tmp_path)], tmp_path / "out", IngestConfig())
    entry = manifest["files"][0]
    assert (entry["status"], entry["reason"]) == ("skipped", "empty")
    assert "no text layer" in entry["detail"]


def test_csv_with_text_column_gives_one_document_per_row():
    data = "标题,内容\n罚息,逾期贷款加收罚息。\n展期,可以申请展期一次。\n".encode("gbk")
    result = read_csv(data)
    assert result.encoding == "gb18030"
    assert [(d.title, d.pages, d.part) for d in result.documents] == [
        ("罚息", ["逾期贷款加收罚息。"], "L2"), ("展期", ["可以申请展期一次。"], "L3")]


def test_jsonl_without_text_field_is_one_document_and_all_bad_is_corrupt():
    rows = [{"q": "什么是LTV", "a": "贷款价值比"}, {"q": "APR", "a": "annual rate"}]
    result = read_jsonl("\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode())
    assert len(result.documents) == 1
    assert result.documents[0].pages == ["q: 什么是LTV; a: 贷款价值比\n\nq: APR; a: annual rate"]
    with pytest.raises(CorruptFileError, match="no line is valid JSON"):
        read_jsonl(b"{oops\n[1,\n")


def test_register_reader_adds_a_format(tmp_path):
    @register_reader(".rules")
    def read_rules(data: bytes) -> ReadResult:
        return ReadResult([RawDocument([data.decode("ascii").replace(";", "\n")])], "ascii")

    try:
        (tmp_path / "a.rules").write_text("Rule one applies to every borrower;Rule two applies to lenders")
        cfg = IngestConfig(formats=[".rules"])
        manifest = ingest([str(tmp_path)], tmp_path / "out", cfg)
        assert manifest["files"][0]["status"] == "ok" and manifest["counts"]["chunks"] == 1
        doc = json.loads((tmp_path / "out" / "documents.jsonl").read_text())
        assert doc["text"] == "Rule one applies to every borrower\nRule two applies to lenders"
    finally:
        READERS.pop(".rules", None)
