"""Encoding detection: UTF-8 (with/without BOM), GBK/GB18030, Big5, UTF-16 with and without BOM; binary refused."""

from __future__ import annotations

import codecs
import os

import pytest

from verticalize.encoding import BinaryContentError, decode_bytes

ZH = "第一条 为了规范商业银行的贷款业务，保护借款人的合法权益，制定本办法。\n第二条 借款人应当按时还款，逾期的应当支付罚息。\n"
ZH_TRAD = "第一條 為了規範商業銀行的貸款業務，保護借款人的合法權益，制定本辦法。\n第二條 借款人應當按時還款。\n"
EN = "The borrower shall repay the loan on time.\nThe lender may charge penalty interest.\n"


@pytest.mark.parametrize("text,encoding,detected", [
    (ZH, "utf-8", "utf-8"),
    (ZH, "gbk", "gb18030"),
    (ZH + "𠀀", "gb18030", "gb18030"),        # a character outside GBK
    (ZH_TRAD, "big5", "big5"),
    (ZH + EN, "utf-16-le", "utf-16-le"),      # no BOM: recognised by NUL bytes on odd offsets
    (ZH + EN, "utf-16-be", "utf-16-be"),
    (EN, "utf-16-le", "utf-16-le"),
])
def test_detects_encoding(text, encoding, detected):
    decoded, name = decode_bytes(text.encode(encoding))
    assert decoded == text
    assert name == detected


@pytest.mark.parametrize("bom,encoding", [
    (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"),
])
def test_bom_wins_and_is_removed(bom, encoding):
    decoded, _ = decode_bytes(bom + ZH.encode(encoding))
    assert decoded == ZH


def test_short_gbk_snippet():
    decoded, name = decode_bytes("借款人应当按时还款。".encode("gbk"))
    assert decoded == "借款人应当按时还款。" and name == "gb18030"


def test_binary_refused_with_reason():
    with pytest.raises(BinaryContentError, match="NUL"):
        decode_bytes(os.urandom(4096) + b"\x00\x00\x01\x00" * 50)
    with pytest.raises(BinaryContentError, match="control characters"):
        decode_bytes(bytes(range(1, 32)) * 40)


def test_empty():
    assert decode_bytes(b"") == ("", "empty")
