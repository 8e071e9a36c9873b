"""PII redaction: checksummed IDs and cards, phones, e-mail, IPs; ordinary numbers left alone."""

from __future__ import annotations

import pytest

from verticalize.config import ConfigError
from verticalize.pii import Redactor, luhn_valid, redact, valid_id_card

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def make_id(first17: str) -> str:
    return first17 + "10X98765432"[sum(int(d) * w for d, w in zip(first17, _WEIGHTS)) % 11]


def make_card(prefix: str, length: int = 16) -> str:
    body = prefix.ljust(length - 1, "0")
    return next(body + str(d) for d in range(10) if luhn_valid(body + str(d)))


VALID_ID = make_id("11010519491231002")      # ends in X
VALID_ID_2 = make_id("44030619900307123")
INVALID_ID = VALID_ID[:17] + ("1" if VALID_ID[17] != "1" else "2")
CARD = make_card("622202", 19)
VISA = make_card("411111", 16)
BAD_CARD = VISA[:-1] + str((int(VISA[-1]) + 1) % 10)


def test_checksum_helpers():
    assert VALID_ID.endswith("X") and valid_id_card(VALID_ID) and valid_id_card(VALID_ID.lower())
    assert not valid_id_card(INVALID_ID)
    assert not valid_id_card(make_id("11010519491331002"))   # month 13: checksum right, date impossible
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")


def test_id_cards_valid_redacted_invalid_kept():
    text, counts = redact(f"申请人身份证号{VALID_ID}，配偶{VALID_ID_2}；另一号码{INVALID_ID}校验位错误。")
    assert VALID_ID not in text and VALID_ID_2 not in text
    assert text.count("[ID_CARD]") == 2 and counts["id_card"] == 2
    assert INVALID_ID in text  # wrong check digit: not an ID card


def test_bank_cards_luhn():
    grouped = " ".join(CARD[i:i + 4] for i in range(0, 19, 4))
    text, counts = redact(f"卡号{CARD}，或写作{grouped}；信用卡{VISA}，另有{BAD_CARD}。")
    assert CARD not in text and grouped not in text and VISA not in text
    assert counts["bank_card"] == 3
    assert BAD_CARD in text


@pytest.mark.parametrize("phone", ["13812345678", "138 1234 5678", "138-1234-5678", "+86 13812345678",
                                   "+86-138-1234-5678", "008619912345678"])
def test_mobile_formats(phone):
    text, counts = redact(f"联系电话{phone}。")
    assert text == "联系电话[PHONE]。" and counts["mobile"] == 1


@pytest.mark.parametrize("phone", ["010-62345678", "0755-83456789", "(021)63456789", "0571 87654321",
                                   "010-62345678-123", "0755-83456789转8001"])
def test_landlines(phone):
    text, counts = redact(f"办公电话：{phone}，工作日。")
    assert text == "办公电话：[PHONE]，工作日。" and counts["landline"] == 1


def test_email_and_ip():
    text, counts = redact("邮箱zhang.san@bank.com.cn或 ops+alert@example.org，服务器10.0.0.12与2001:db8::8a2e:370:7334。")
    assert text == "邮箱[EMAIL]或 [EMAIL]，服务器[IP]与[IP]。"
    assert counts == {"email": 2, "ip": 2}


@pytest.mark.parametrize("text", [
    "贷款金额为人民币12,345,678.90元，年利率4.35%。",
    "合同于2024-01-15签订，2024年3月1日生效，期限36个月。",
    "依据《商业银行法》第三十九条和第1234条。",
    "订单号20240115123456789已处理。",          # 17 digits, starts with 2: not a card
    "会议时间12:30:45，版本v1.2.3.4，章节3.1.2。",
    "总计 1000000 元，编号 ABC-12345678。",
    "The amount is 1,234,567.89 USD and the year is 2023.",
])
def test_ordinary_numbers_untouched(text):
    assert redact(text) == (text, {})


def test_kinds_are_configurable():
    text, counts = Redactor(["email"]).redact(f"a@b.com {VALID_ID} 13812345678")
    assert text == f"[EMAIL] {VALID_ID} 13812345678" and counts == {"email": 1}
    with pytest.raises(ConfigError, match="unknown PII kind.*passport.*known kinds: id_card"):
        Redactor(["email", "passport"])
