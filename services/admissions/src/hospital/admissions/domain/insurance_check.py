"""Card-less reception: what the insurance agency's portal says about a patient's BHYT card.

Since cards stopped being printed (mid-2025), reception looks the card up on BHXH's portal
(``KQNhanLichSuKCB2024`` of the receiving portal, Công văn 1923/BHXH-CNTT) from the CCCD number or the
10-digit social-insurance number. The portal answers a result code (``maKetQua``) and the card.
This module turns an answer into the clerk's status; the HTTP exchange is the adapter's
(``adapters/insurance_portal.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

CCCD = re.compile(r"[0-9]{12}")
SOCIAL_INSURANCE_NUMBER = re.compile(r"[0-9]{10}")

#: maKetQua of an answer that carries a card (000 exact; 001/002 cards of the defence and police
#: insurance funds; 003/004 the old card replaced by a new one, whose data the answer also carries).
CARD_FOUND = frozenset({"000", "001", "002", "003", "004"})
#: the card has expired
CARD_EXPIRED = frozenset({"010"})


class Status(StrEnum):
    VALID = "valid"  # a card valid today: reception may open an insured visit with it
    EXPIRED = "expired"  # the card ended: fee-paying, or the patient renews it
    REFUSED = "refused"  # the portal found no card for these details (or refused them): the message says why
    UNAVAILABLE = (
        "unavailable"  # the portal is down, slow or refused our credentials: proceed fee-paying or retry
    )
    NOT_CONFIGURED = "not_configured"  # no portal set up for this hospital


@dataclass(frozen=True)
class PortalCard:
    number: str
    benefit_level: int  # 3rd character of the card number
    registered_facility: str  # maDKBD
    valid_from: date | None
    valid_to: date | None
    five_year_date: date | None  # ngayDu5Nam: 5 consecutive years insured
    full_name: str = ""
    social_insurance_number: str = ""


@dataclass(frozen=True)
class CheckResult:
    status: Status
    code: str  # the portal's maKetQua, "" when it did not answer
    message: str
    card: PortalCard | None
    checked_at: datetime


def identifier_kind(identifier: str) -> str:
    """``cccd`` (12 digits) or ``social_insurance_number`` (10 digits); ValueError otherwise."""
    if CCCD.fullmatch(identifier):
        return "cccd"
    if SOCIAL_INSURANCE_NUMBER.fullmatch(identifier):
        return "social_insurance_number"
    raise ValueError("look a card up by the 12-digit CCCD number or the 10-digit social-insurance number")


def parse_day(text: str | None) -> date | None:
    """The portal's dates: dd/mm/yyyy (also yyyymmdd, yyyy-mm-dd)."""
    value = (text or "").strip()
    for pattern, order in ((r"(\d{2})/(\d{2})/(\d{4})", "dmy"), (r"(\d{4})-?(\d{2})-?(\d{2})", "ymd")):
        m = re.fullmatch(pattern, value)
        if m:
            a, b, c = (int(g) for g in m.groups())
            try:
                return date(c, b, a) if order == "dmy" else date(a, b, c)
            except ValueError:
                return None
    return None


def classify(answer: dict[str, object], today: date, checked_at: datetime) -> CheckResult:
    """The clerk's status of one portal answer (a JSON object)."""
    code = str(answer.get("maKetQua") or "").strip()
    message = str(answer.get("ghiChu") or answer.get("message") or "").strip()
    if code not in CARD_FOUND and code not in CARD_EXPIRED:
        return CheckResult(
            Status.REFUSED, code, message or "the portal found no card for these details", None, checked_at
        )
    replaced = code in ("003", "004") and answer.get("maTheMoi")
    suffix = "Moi" if replaced else ""
    number = str(answer.get("maThe" + suffix) or answer.get("maThe") or "").strip().upper()
    card = PortalCard(
        number=number,
        benefit_level=int(number[2]) if len(number) == 15 and number[2].isdigit() else 0,
        registered_facility=str(answer.get("maDKBD" + suffix) or answer.get("maDKBD") or "").strip(),
        valid_from=parse_day(str(answer.get("gtTheTu" + suffix) or answer.get("gtTheTu") or "")),
        valid_to=parse_day(str(answer.get("gtTheDen" + suffix) or answer.get("gtTheDen") or "")),
        five_year_date=parse_day(str(answer.get("ngayDu5Nam") or "")),
        full_name=str(answer.get("hoTen") or "").strip(),
        social_insurance_number=str(answer.get("maSoBHXH") or "").strip(),
    )
    expired = code in CARD_EXPIRED or (card.valid_to is not None and card.valid_to < today)
    if expired:
        return CheckResult(
            Status.EXPIRED, code, message or f"the card ended on {card.valid_to}", card, checked_at
        )
    if card.valid_from is not None and card.valid_from > today:
        return CheckResult(
            Status.EXPIRED,
            code,
            message or f"the card is valid only from {card.valid_from}",
            card,
            checked_at,
        )
    return CheckResult(Status.VALID, code, message, card, checked_at)
