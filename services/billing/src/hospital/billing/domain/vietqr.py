"""VietQR (NAPAS 247) payloads: EMVCo merchant-presented QR for bank transfers.

A payload is a flat string of TLV objects: a 2-digit tag, a 2-digit length and
the value. VietQR uses:

====  =====================================================================
tag   value
====  =====================================================================
00    payload format indicator, always ``01``
01    point of initiation: ``11`` static (reusable), ``12`` dynamic (one bill)
38    merchant account: {00 ``A000000727`` (NAPAS GUID), 01 {00 bank BIN,
      01 account number}, 02 service code ``QRIBFTTA`` (to an account)}
53    currency, ``704`` (VND)
54    amount, whole VND
58    country, ``VN``
62    additional data: {01 bill number, 08 purpose of transaction}
63    CRC-16/CCITT-FALSE over everything up to and including ``6304``
====  =====================================================================
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from dataclasses import dataclass

import segno

from hospital.billing.domain.vietnam import strip_diacritics

NAPAS_GUID = "A000000727"
SERVICE_TO_ACCOUNT = "QRIBFTTA"
SERVICE_TO_CARD = "QRIBFTTC"
CURRENCY_VND = "704"
COUNTRY_VN = "VN"

#: EMVCo limits each sub-field of tag 62 (bill number, purpose) to ``ans..25``.
MAX_ADDITIONAL_FIELD_LENGTH = 25
#: EMVCo tag 54 is ``ans..13``.
MAX_AMOUNT_DIGITS = 13

_TAG_FORMAT = "00"
_TAG_INITIATION = "01"
_TAG_MERCHANT = "38"
_TAG_CURRENCY = "53"
_TAG_AMOUNT = "54"
_TAG_COUNTRY = "58"
_TAG_ADDITIONAL = "62"
_TAG_CRC = "63"
_STATIC = "11"
_DYNAMIC = "12"

_BIN_RE = re.compile(r"[0-9]{6}")
_ACCOUNT_RE = re.compile(r"[0-9A-Za-z]{1,19}")
_PRINTABLE_ASCII_RE = re.compile(r"[\x20-\x7e]*")


class VietQRError(ValueError):
    """Base class of every VietQR building or parsing error."""


class InvalidField(VietQRError):
    """A value given to :func:`build_vietqr` breaks a VietQR/EMVCo limit."""


class MalformedPayload(VietQRError):
    """The text is not a well-formed VietQR TLV payload."""


class InvalidCRC(MalformedPayload):
    """The trailing CRC does not match the payload (corrupted or edited QR)."""


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: polynomial 0x1021, initial value 0xFFFF, no reflection, no final XOR."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def encode_tlv(fields: Iterable[tuple[str, str]]) -> str:
    """Encode ``(tag, value)`` pairs as EMVCo TLV; each value must be 1..99 characters."""
    parts = []
    for tag, value in fields:
        if not re.fullmatch(r"[0-9]{2}", tag):
            raise InvalidField(f"TLV tag must be two digits, got {tag!r}")
        if not 0 < len(value) <= 99:
            raise InvalidField(f"TLV value of tag {tag} must be 1..99 characters, got {len(value)}")
        parts.append(f"{tag}{len(value):02d}{value}")
    return "".join(parts)


def decode_tlv(text: str) -> list[tuple[str, str]]:
    """Decode EMVCo TLV text into ``(tag, value)`` pairs, in order."""
    fields: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        header = text[pos : pos + 4]
        if len(header) < 4 or not header.isdigit():
            raise MalformedPayload(f"bad TLV header {header!r} at offset {pos}")
        length = int(header[2:])
        value = text[pos + 4 : pos + 4 + length]
        if len(value) != length:
            raise MalformedPayload(
                f"tag {header[:2]} at offset {pos} declares {length} characters, has {len(value)}"
            )
        fields.append((header[:2], value))
        pos += 4 + length
    return fields


def normalize_purpose(text: str, *, field_name: str = "purpose") -> str:
    """Make ``text`` safe for a VietQR additional-data field, or raise :class:`InvalidField`.

    Vietnamese diacritics are stripped ("Viện phí Đợt 1" -> "Vien phi Dot 1") because
    bank apps and NAPAS accept ASCII only; whitespace runs collapse to one space.
    Anything else outside printable ASCII, or a result over 25 characters, is an error.
    """
    cleaned = " ".join(strip_diacritics(text).split())
    if not cleaned:
        raise InvalidField(f"{field_name} is empty")
    if not _PRINTABLE_ASCII_RE.fullmatch(cleaned):
        bad = sorted({ch for ch in cleaned if not _PRINTABLE_ASCII_RE.fullmatch(ch)})
        raise InvalidField(f"{field_name} has characters banks reject: {''.join(bad)!r}")
    if len(cleaned) > MAX_ADDITIONAL_FIELD_LENGTH:
        raise InvalidField(
            f"{field_name} is {len(cleaned)} characters after removing diacritics;"
            f" VietQR allows {MAX_ADDITIONAL_FIELD_LENGTH}: {cleaned!r}"
        )
    return cleaned


def build_vietqr(
    bank_bin: str,
    account: str,
    amount: int | None = None,
    purpose: str | None = None,
    bill_number: str | None = None,
) -> str:
    """Build a VietQR transfer-to-account payload, CRC included.

    With an amount the QR is dynamic (``01`` = ``12``, one bill), without one it is
    static (``11``, the payer types the amount). ``purpose`` and ``bill_number`` go
    through :func:`normalize_purpose`.
    """
    if not _BIN_RE.fullmatch(bank_bin):
        raise InvalidField(f"bank BIN must be 6 digits, got {bank_bin!r}")
    if not _ACCOUNT_RE.fullmatch(account):
        raise InvalidField(f"account must be 1..19 letters or digits, got {account!r}")
    if amount is not None:
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise InvalidField(f"amount must be an integer number of VND, got {amount!r}")
        if amount <= 0 or len(str(amount)) > MAX_AMOUNT_DIGITS:
            raise InvalidField(f"amount must be 1..{MAX_AMOUNT_DIGITS} digits of VND, got {amount}")

    beneficiary = encode_tlv([("00", bank_bin), ("01", account)])
    merchant = encode_tlv([("00", NAPAS_GUID), ("01", beneficiary), ("02", SERVICE_TO_ACCOUNT)])
    fields = [
        (_TAG_FORMAT, "01"),
        (_TAG_INITIATION, _STATIC if amount is None else _DYNAMIC),
        (_TAG_MERCHANT, merchant),
        (_TAG_CURRENCY, CURRENCY_VND),
    ]
    if amount is not None:
        fields.append((_TAG_AMOUNT, str(amount)))
    fields.append((_TAG_COUNTRY, COUNTRY_VN))
    additional = []
    if bill_number:
        additional.append(("01", normalize_purpose(bill_number, field_name="bill_number")))
    if purpose:
        additional.append(("08", normalize_purpose(purpose)))
    if additional:
        fields.append((_TAG_ADDITIONAL, encode_tlv(additional)))
    body = encode_tlv(fields) + _TAG_CRC + "04"
    return body + f"{crc16_ccitt_false(body.encode('ascii')):04X}"


@dataclass(frozen=True)
class VietQR:
    """The fields of a parsed VietQR payload."""

    bank_bin: str
    account: str
    amount: int | None
    purpose: str | None
    bill_number: str | None
    dynamic: bool
    service_code: str
    currency: str
    country: str


def parse_vietqr(text: str) -> VietQR:
    """Parse and check a VietQR payload; raise :class:`InvalidCRC` or :class:`MalformedPayload`."""
    text = text.strip()
    if not text.isascii():
        raise MalformedPayload("payload is not ASCII")
    fields = decode_tlv(text)
    if not fields or fields[-1][0] != _TAG_CRC or len(fields[-1][1]) != 4:
        raise MalformedPayload("payload must end with tag 63 holding a 4-digit CRC")
    expected = f"{crc16_ccitt_false(text[:-4].encode('ascii')):04X}"
    if fields[-1][1].upper() != expected:
        raise InvalidCRC(f"CRC is {fields[-1][1]}, payload computes {expected}")
    tags = dict(fields)
    if len(tags) != len(fields):
        raise MalformedPayload("a top-level tag appears twice")
    if tags.get(_TAG_FORMAT) != "01":
        raise MalformedPayload("tag 00 (payload format) must be 01")
    if tags.get(_TAG_INITIATION) not in (_STATIC, _DYNAMIC):
        raise MalformedPayload("tag 01 (point of initiation) must be 11 or 12")
    if _TAG_MERCHANT not in tags:
        raise MalformedPayload("tag 38 (NAPAS merchant account) is missing")
    merchant = dict(decode_tlv(tags[_TAG_MERCHANT]))
    if merchant.get("00") != NAPAS_GUID:
        raise MalformedPayload(f"tag 38.00 must be the NAPAS GUID {NAPAS_GUID}")
    beneficiary = dict(decode_tlv(merchant.get("01", "")))
    if "00" not in beneficiary or "01" not in beneficiary:
        raise MalformedPayload("tag 38.01 must hold a bank BIN (00) and an account (01)")
    amount_text = tags.get(_TAG_AMOUNT)
    if amount_text is not None and not amount_text.isdigit():
        raise MalformedPayload(f"tag 54 (amount) must be whole VND digits, got {amount_text!r}")
    additional = dict(decode_tlv(tags.get(_TAG_ADDITIONAL, "")))
    return VietQR(
        bank_bin=beneficiary["00"],
        account=beneficiary["01"],
        amount=int(amount_text) if amount_text is not None else None,
        purpose=additional.get("08"),
        bill_number=additional.get("01"),
        dynamic=tags[_TAG_INITIATION] == _DYNAMIC,
        service_code=merchant.get("02", ""),
        currency=tags.get(_TAG_CURRENCY, ""),
        country=tags.get(_TAG_COUNTRY, ""),
    )


def vietqr_png(text: str, scale: int = 8, border: int = 4) -> bytes:
    """Render ``text`` as a PNG QR code (error correction M, ``scale`` pixels per module)."""
    if scale < 1 or border < 0:
        raise ValueError("scale must be >= 1 and border >= 0")
    buffer = io.BytesIO()
    segno.make_qr(text, error="m", boost_error=False).save(buffer, kind="png", scale=scale, border=border)
    return buffer.getvalue()
