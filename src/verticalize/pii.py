"""PII redaction for Chinese and English text: typed placeholders, counts per kind, no mapping kept.

Kinds (config ``ingest.pii.kinds``) and their placeholders:
    id_card    mainland resident ID (18 digits, valid birth date, ISO 7064 MOD 11-2 check digit)   [ID_CARD]
    bank_card  13-19 digits (optionally grouped) starting 3-6, passing the Luhn check             [BANK_CARD]
    mobile     mainland mobile 1[3-9]x xxxx xxxx, optional +86/0086 and space/hyphen separators  [PHONE]
    landline   0 + area code (010, 02x, 0xxx) + 7-8 digits, optional extension                    [PHONE]
    email      e-mail addresses                                                                   [EMAIL]
    ip         IPv4 and IPv6 addresses                                                            [IP]

Checksums keep ordinary numbers (amounts, dates, article numbers, order numbers) from being taken for PII: an
18-digit number with a wrong ID check digit is not an ID card. Detectors run in a fixed order on the already
redacted text, so a number is claimed once (an ID card is never counted again as a bank card).

Stage-neutral: ingest redacts documents with it, serve redacts logged queries and answers with the same rules.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from datetime import date
from typing import Callable, Iterable

from verticalize.config import ConfigError

PLACEHOLDERS = {
    "id_card": "[ID_CARD]",
    "bank_card": "[BANK_CARD]",
    "mobile": "[PHONE]",
    "landline": "[PHONE]",
    "email": "[EMAIL]",
    "ip": "[IP]",
}
PII_KINDS = tuple(PLACEHOLDERS)

# ASCII-only boundaries: CJK characters count as \w in Python, and "电话13812345678" must still match.
_B = r"(?<![0-9A-Za-z_])"
_E = r"(?![0-9A-Za-z_])"

_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
                    r"(?![A-Za-z0-9-])")
_ID_CARD = re.compile(_B + r"[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]" + _E)
_BANK_CARD = re.compile(r"(?<![0-9A-Za-z_.,-])(?:\d{13,19}|\d{4,6}(?:[ -]\d{3,6}){2,4})(?![0-9A-Za-z_-]|[.,]\d)")
_MOBILE = re.compile(r"(?<![0-9A-Za-z_+])(?:(?:\+|00)86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}" + _E)
_LANDLINE = re.compile(
    r"(?<![0-9A-Za-z_-])(?:\(0(?:10|2\d|[3-9]\d{2})\)[ -]?|0(?:10|2\d|[3-9]\d{2})[ -]?)[2-9]\d{6,7}"
    r"(?:(?:-|转|ext\.? ?)\d{1,6})?" + _E)
_IPV4 = re.compile(r"(?<![0-9A-Za-z_.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
                   r"(?![0-9A-Za-z_]|\.\d)")
_IPV6 = re.compile(r"(?<![0-9A-Za-z_:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Za-z_:])")

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def valid_id_card(number: str) -> bool:
    """18-digit mainland resident ID: real birth date and ISO 7064 MOD 11-2 check digit."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    if born > date.today():
        return False
    total = sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS))
    return _ID_CHECK[total % 11] == number[17].upper()


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _bank_card(match: str) -> bool:
    digits = re.sub(r"[ -]", "", match)
    return 13 <= len(digits) <= 19 and digits[0] in "3456" and luhn_valid(digits)


def _ipv6(match: str) -> bool:
    if match.count(":") < 2 or sum(c not in ":" for c in match) < 2:
        return False
    try:
        ipaddress.IPv6Address(match)
    except ValueError:
        return False
    return True


# (kind, pattern, extra check) in the order they run.
_DETECTORS: tuple[tuple[str, re.Pattern[str], Callable[[str], bool] | None], ...] = (
    ("email", _EMAIL, None),
    ("id_card", _ID_CARD, valid_id_card),
    ("bank_card", _BANK_CARD, _bank_card),
    ("mobile", _MOBILE, None),
    ("landline", _LANDLINE, None),
    ("ip", _IPV4, None),
    ("ip", _IPV6, _ipv6),
)


def check_kinds(kinds: Iterable[str]) -> list[str]:
    kinds = list(kinds)
    unknown = [k for k in kinds if k not in PLACEHOLDERS]
    if unknown:
        raise ConfigError(f"unknown PII kind(s) {unknown} in ingest.pii.kinds; known kinds: {', '.join(PII_KINDS)}")
    return kinds


class Redactor:
    """Replaces PII of the chosen kinds with placeholders; ``redact`` returns the text and counts per kind."""

    def __init__(self, kinds: Iterable[str] = PII_KINDS):
        chosen = set(check_kinds(kinds))
        self._detectors = [d for d in _DETECTORS if d[0] in chosen]

    def redact(self, text: str) -> tuple[str, Counter[str]]:
        counts: Counter[str] = Counter()
        for kind, pattern, check in self._detectors:
            def replace(m: re.Match[str], kind: str = kind, check=check) -> str:
                if check is not None and not check(m.group(0)):
                    return m.group(0)
                counts[kind] += 1
                return PLACEHOLDERS[kind]

            text = pattern.sub(replace, text)
        return text, counts


def redact(text: str, kinds: Iterable[str] = PII_KINDS) -> tuple[str, Counter[str]]:
    """Convenience: ``Redactor(kinds).redact(text)``."""
    return Redactor(kinds).redact(text)


# The name the serving gateway imports (feedback and logs are redacted with the same rules as documents).
redact_text = redact
