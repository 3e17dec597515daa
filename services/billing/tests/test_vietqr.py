"""VietQR payloads: the checked vectors of the brief, parsing, CRC and purpose rules."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from hospital.billing.domain.vietqr import (
    InvalidCRC,
    InvalidField,
    MalformedPayload,
    VietQR,
    build_vietqr,
    crc16_ccitt_false,
    decode_tlv,
    encode_tlv,
    parse_vietqr,
    vietqr_png,
)

VECTOR_1 = (
    "00020101021238530010A0000007270123000697041601092576788590208QRIBFTTA"
    "53037045405100005802VN62150811Chuyen tien630453E6"
)
VECTOR_2 = (
    "00020101021238560010A0000007270126000697041501121133666688880208QRIBFTTA"
    "530370454061500005802VN62240820VP 24001234 HD00012363049647"
)


def test_checked_vector_1() -> None:
    assert build_vietqr("970416", "257678859", amount=10000, purpose="Chuyen tien") == VECTOR_1


def test_checked_vector_2_vietinbank() -> None:
    assert build_vietqr("970415", "113366668888", amount=150000, purpose="VP 24001234 HD000123") == VECTOR_2


def test_crc_check_value() -> None:
    # The catalogued check value of CRC-16/CCITT-FALSE.
    assert crc16_ccitt_false(b"123456789") == 0x29B1


def test_parse_checked_vector() -> None:
    assert parse_vietqr(VECTOR_2) == VietQR(
        bank_bin="970415",
        account="113366668888",
        amount=150000,
        purpose="VP 24001234 HD000123",
        bill_number=None,
        dynamic=True,
        service_code="QRIBFTTA",
        currency="704",
        country="VN",
    )


def test_round_trip_with_bill_number_and_vietnamese_purpose() -> None:
    text = build_vietqr(
        "970436", "0011001234567", amount=2_345_000, purpose="Viện phí Đợt 2", bill_number="HD000777"
    )
    parsed = parse_vietqr(text)
    assert (parsed.bank_bin, parsed.account, parsed.amount) == ("970436", "0011001234567", 2_345_000)
    assert parsed.purpose == "Vien phi Dot 2"
    assert parsed.bill_number == "HD000777"
    assert parsed.dynamic is True


def test_static_qr_without_amount() -> None:
    text = build_vietqr("970415", "113366668888")
    assert text.startswith("000201010211")
    assert "5802VN" in text and "54" not in dict(decode_tlv(text))
    parsed = parse_vietqr(text)
    assert parsed.amount is None and parsed.dynamic is False and parsed.purpose is None


@pytest.mark.parametrize(
    "corrupted",
    [
        VECTOR_2.replace("5406150000", "5406160000"),  # amount changed
        VECTOR_2.replace("HD000123", "HD000124"),  # purpose changed
        VECTOR_2[:-4] + "9648",  # CRC changed
    ],
)
def test_corrupted_payload_fails_crc(corrupted: str) -> None:
    with pytest.raises(InvalidCRC):
        parse_vietqr(corrupted)


def test_lowercase_crc_is_accepted() -> None:
    assert parse_vietqr(VECTOR_1[:-4] + VECTOR_1[-4:].lower()).amount == 10000


@pytest.mark.parametrize(
    "text",
    [
        VECTOR_2[:-8],  # no CRC tag at the end
        VECTOR_2[:30],  # truncated inside a value
        "0002010102",  # tag 01 declares 2 characters, has none
        "hello world",
    ],
)
def test_malformed_payloads(text: str) -> None:
    with pytest.raises(MalformedPayload):
        parse_vietqr(text)


def test_tlv_round_trip_and_limits() -> None:
    fields = [("00", "01"), ("62", encode_tlv([("08", "x" * 25)]))]
    assert decode_tlv(encode_tlv(fields)) == fields
    with pytest.raises(InvalidField):
        encode_tlv([("08", "x" * 100)])
    with pytest.raises(InvalidField):
        encode_tlv([("8", "x")])


def test_purpose_diacritics_are_stripped() -> None:
    text = build_vietqr("970415", "113366668888", amount=50_000, purpose="Ngọc đóng  viện phí ")
    assert parse_vietqr(text).purpose == "Ngoc dong vien phi"


def test_purpose_longer_than_25_characters_is_refused() -> None:
    with pytest.raises(InvalidField, match="25"):
        build_vietqr("970415", "113366668888", amount=50_000, purpose="Thanh toán viện phí đợt 2 HD000123")


def test_purpose_with_non_vietnamese_symbols_is_refused() -> None:
    with pytest.raises(InvalidField, match="—"):
        build_vietqr("970415", "113366668888", amount=50_000, purpose="HD000123 — BV")


@pytest.mark.parametrize(
    ("bank_bin", "account", "amount"),
    [
        ("97041", "113366668888", 1000),  # BIN too short
        ("970415", "1133-6666", 1000),  # account with a dash
        ("970415", "1" * 20, 1000),  # account too long
        ("970415", "113366668888", 0),
        ("970415", "113366668888", -5),
        ("970415", "113366668888", 1500.0),
        ("970415", "113366668888", True),
        ("970415", "113366668888", 10**13),
    ],
)
def test_invalid_inputs_are_refused(bank_bin: str, account: str, amount: object) -> None:
    with pytest.raises(InvalidField):
        build_vietqr(bank_bin, account, amount=amount)  # type: ignore[arg-type]


def test_png_rendering() -> None:
    small = vietqr_png(VECTOR_2, scale=4)
    large = vietqr_png(VECTOR_2, scale=8)
    assert small.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(small)) as a, Image.open(io.BytesIO(large)) as b:
        assert a.size[0] == a.size[1]
        assert b.size == (a.size[0] * 2, a.size[1] * 2)
        # a QR symbol is 21 + 4k modules wide, plus a 4-module quiet zone on each side
        modules = a.size[0] // 4 - 8
        assert a.size[0] % 4 == 0 and modules >= 21 and (modules - 21) % 4 == 0
