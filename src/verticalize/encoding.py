"""Bytes -> text: BOM sniffing, UTF-8, BOM-less UTF-16, then charset-normalizer for legacy CJK encodings.

Order matters: a BOM is certain; strict UTF-8 almost never decodes a legacy file by accident; BOM-less UTF-16
shows itself by NUL bytes on one parity (ASCII characters such as newlines and digits); only then is
charset-normalizer asked to tell GB18030/GBK, Big5, Shift-JIS and the rest apart. Anything with NUL bytes that is
not UTF-16, or that decodes to control characters, is binary.

Stage-neutral: ingest reads documents with it, the data stage reads seed and test files with it.
"""

from __future__ import annotations

import codecs
import re

from charset_normalizer import from_bytes

from verticalize.text import is_cjk


class BinaryContentError(ValueError):
    """The bytes are not text in any encoding we recognise."""


_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE: its BOM starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# GBK and GB2312 are subsets of GB18030; decoding with the superset never fails on characters they lack.
_SUPERSETS = {"gb2312": "gb18030", "gbk": "gb18030", "cp936": "gb18030"}
_SAMPLE = 1 << 16
_SHORT = 4096
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")
_CHINESE = {"gb18030", "gbk", "gb2312", "cp936", "big5", "big5hkscs", "cp950", "hz"}


def _bom_encoding(data: bytes) -> str | None:
    for bom, name in _BOMS:
        if data.startswith(bom):
            return name
    return None


def _utf16_without_bom(data: bytes) -> str | None:
    """'utf-16-le'/'utf-16-be' when NUL bytes sit (almost) only at odd/even offsets, as ASCII does in UTF-16."""
    sample = data[:_SAMPLE]
    if len(sample) < 4 or len(data) % 2:  # UTF-16 has an even number of bytes
        return None
    even = sample[0::2].count(0)
    odd = sample[1::2].count(0)
    if odd >= 2 and even <= odd * 0.05:
        return "utf-16-le"
    if even >= 2 and odd <= even * 0.05:
        return "utf-16-be"
    return None


def _plausible(ch: str) -> bool:
    cp = ord(ch)
    return (ch.isspace() or 0x20 <= cp < 0x7F or 0xA0 <= cp < 0x250 or 0x370 <= cp < 0x530
            or 0x2000 <= cp < 0x2070 or 0x3000 <= cp < 0x3040 or 0xFF00 <= cp < 0xFFF0 or is_cjk(ch))


def _plausible_share(text: str) -> float:
    """Share of characters from scripts real documents use (Latin, Greek, Cyrillic, CJK, punctuation)."""
    sample = text[:_SAMPLE]
    return sum(map(_plausible, sample)) / len(sample) if sample else 1.0


def _control_share(text: str) -> float:
    sample = text[:_SAMPLE]
    if not sample:
        return 0.0
    return len(_CONTROL.findall(sample)) / len(sample)


def decode_bytes(data: bytes) -> tuple[str, str]:
    """(text, encoding name). Raises BinaryContentError when the bytes are not text."""
    if not data:
        return "", "empty"
    encoding = _bom_encoding(data)
    if encoding:
        return _checked(data.decode(encoding, errors="replace"), encoding)
    if b"\x00" not in data[:_SAMPLE]:
        try:
            return _checked(data.decode("utf-8"), "utf-8")
        except UnicodeDecodeError:
            pass
    else:
        encoding = _utf16_without_bom(data)
        if encoding is None:
            raise BinaryContentError("contains NUL bytes and is not UTF-16")
        try:  # strict: binary data read as UTF-16 soon hits an unpaired surrogate
            text = data.decode(encoding)
        except UnicodeDecodeError:
            raise BinaryContentError("contains NUL bytes and is not valid UTF-16") from None
        if _plausible_share(text) < 0.8:
            raise BinaryContentError("contains NUL bytes and does not read as UTF-16 text")
        return _checked(text, encoding)
    encoding = _legacy_encoding(data)
    if encoding is None:
        raise BinaryContentError("no text encoding fits these bytes")
    encoding = _SUPERSETS.get(encoding, encoding)
    return _checked(data.decode(encoding, errors="replace"), encoding)


def _legacy_encoding(data: bytes) -> str | None:
    """charset-normalizer's pick, except that a short text it reads as Korean/Japanese but that also decodes as
    Chinese is read as Chinese: a dozen GBK characters are ambiguous and this tool's corpora are Chinese/English."""
    matches = list(from_bytes(data))
    if not matches:
        return None
    best = matches[0].encoding
    if len(data) < _SHORT and best not in _CHINESE:
        for match in matches[1:]:
            if match.encoding in _CHINESE:
                return match.encoding
    return best


def _checked(text: str, encoding: str) -> tuple[str, str]:
    if _control_share(text) > 0.05:
        raise BinaryContentError(f"decodes as {encoding} but is mostly control characters")
    if text.count("\ufffd") > max(8, len(text) // 20):
        raise BinaryContentError(f"too many undecodable bytes for {encoding}")
    return text, encoding
