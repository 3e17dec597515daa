"""Identity documents read at reception: chip CCCD and BHYT card QR codes, BHYT card numbers.

The parsers read fields by position and accept empty optional fields, but reject what cannot be an
identity (wrong digits, impossible dates, undecodable hex) with a ``ScanError`` naming the field, so
the clerk can re-scan or type the value instead of registering a wrong patient.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from typing import Literal

from hospital.admissions.domain.names import fold, normalize_name

__all__ = [
    "BENEFIT_RATES",
    "BhytIdentity",
    "BhytNumber",
    "CccdIdentity",
    "Conflict",
    "PartialDate",
    "RegisteredFacility",
    "ScanError",
    "Sex",
    "identity_conflicts",
    "parse_bhyt_number",
    "parse_bhyt_qr",
    "parse_cccd_qr",
    "parse_scan",
]

Sex = Literal["male", "female"]


class ScanError(ValueError):
    """A scanned or typed identity that cannot be used, with a stable ``code`` for the API.

    Codes: ``qr.empty``, ``qr.unknown_format``, ``qr.truncated``, ``cccd.bad_id``, ``cccd.bad_old_id``,
    ``cccd.missing_name``, ``cccd.bad_date``, ``cccd.bad_sex``, ``bhyt.bad_card_number``,
    ``bhyt.bad_hex``, ``bhyt.missing_name``, ``bhyt.bad_date``, ``bhyt.bad_sex``,
    ``bhyt.missing_terminator``. ``field`` names the offending field, or is None for the whole text.
    """

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field
        self.message = message


_DATE_PATTERNS = (
    re.compile(r"(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2}))?)?", re.ASCII),
    re.compile(r"(?:(?P<day>\d{1,2})/)?(?P<month>\d{1,2})/(?P<year>\d{4})", re.ASCII),
    re.compile(r"(?P<day>\d{2})?(?P<month>\d{2})(?P<year>\d{4})", re.ASCII),
)


@dataclass(frozen=True)
class PartialDate:
    """A birth date that may be known only to the year (or year and month), as on many ID cards."""

    year: int
    month: int | None = None
    day: int | None = None

    def __post_init__(self) -> None:
        if self.month is None and self.day is not None:
            raise ValueError("a day needs a month")
        # Raises ValueError for an impossible date; "00" is not a month or day.
        date(self.year, 1 if self.month is None else self.month, 1 if self.day is None else self.day)

    @classmethod
    def parse(cls, text: str) -> PartialDate:
        """Parse "yyyy", "yyyy-mm", "yyyy-mm-dd", "dd/mm/yyyy", "mm/yyyy", "ddmmyyyy" or "mmyyyy".

        Day and month may have one digit when written with slashes ("4/9/1985"), as some card
        readers print them. Raises ValueError otherwise.
        """
        s = text.strip()
        for pattern in _DATE_PATTERNS:
            if m := pattern.fullmatch(s):
                month, day = m["month"], m["day"]
                return cls(int(m["year"]), int(month) if month else None, int(day) if day else None)
        raise ValueError(f"not a date: {text!r}")

    @classmethod
    def from_date(cls, value: date) -> PartialDate:
        return cls(value.year, value.month, value.day)

    @property
    def is_complete(self) -> bool:
        return self.day is not None

    def to_date(self) -> date | None:
        """The full date, or None when only the year (and month) is known."""
        if self.month is None or self.day is None:
            return None
        return date(self.year, self.month, self.day)

    def iso(self) -> str:
        """ISO 8601 form, as precise as known: "1985", "1985-09" or "1985-09-04"."""
        parts = [f"{self.year:04d}"] + [f"{p:02d}" for p in (self.month, self.day) if p is not None]
        return "-".join(parts)

    def agrees_with(self, other: PartialDate) -> bool:
        """True unless a part known on both sides differs ("1985" agrees with "1985-09-04")."""
        return all(
            a is None or b is None or a == b
            for a, b in ((self.year, other.year), (self.month, other.month), (self.day, other.day))
        )

    def __str__(self) -> str:
        return self.iso()


@dataclass(frozen=True)
class CccdIdentity:
    """The data in the QR code printed on a chip citizen identity card (CCCD / Căn cước)."""

    cccd: str
    old_id: str | None
    full_name: str
    birth_date: PartialDate
    sex: Sex
    address: str
    issue_date: date | None
    extra_fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class BhytNumber:
    """A 15-character health insurance card number, e.g. ``HS4010120878811``.

    Beneficiary group (2 letters, "HS" = pupil) + benefit level (1..5) + province code of the issuing
    social-insurance office (2 digits) + the insured person's number (10 characters: the
    social-insurance number on current cards; old cards may have letters there).
    """

    value: str
    group_code: str
    benefit_level: int
    province_code: str
    insured_id: str

    @property
    def benefit_rate(self) -> int:
        return BENEFIT_RATES[self.benefit_level]


BENEFIT_RATES: dict[int, int] = {1: 100, 2: 100, 3: 95, 4: 80, 5: 100}
"""Percent of covered costs the insurer pays, by benefit level (level 2 is capped for some services)."""


@dataclass(frozen=True)
class RegisteredFacility:
    """The primary-care facility registered on a BHYT card, printed as "province - facility"."""

    raw: str
    province_code: str | None
    facility_code: str | None

    @property
    def code(self) -> str | None:
        """The 5-character facility code used in claims (MA_DKBD), e.g. "01043"."""
        if self.province_code is None or self.facility_code is None:
            return None
        return self.province_code + self.facility_code


@dataclass(frozen=True)
class BhytIdentity:
    """The data in the QR code printed on a health insurance (BHYT) card."""

    card_number: str
    group_code: str
    benefit_level: int
    benefit_rate: int
    province_code: str
    insured_id: str
    full_name: str
    birth_date: PartialDate
    sex: Sex
    address: str
    registered_facility: RegisteredFacility
    valid_from: date | None
    valid_to: date | None
    issue_date: date | None
    management_code: str | None
    guardian_name: str | None
    living_area_code: str | None
    """Position 12, unconfirmed: card readers call it the living-area code; the known sample has "4"."""
    five_year_date: date | None
    """Date from which the holder has 5 continuous years of coverage (affects co-payment)."""
    checksum: str | None
    """Position 14, kept as printed; its algorithm is not published, so it is not verified."""
    extra_fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class Conflict:
    """A disagreement between the presented documents, or a card unusable on the visit date."""

    code: str
    message: str
    cccd_value: str | None = None
    bhyt_value: str | None = None


# --- parsing ---------------------------------------------------------------------------------------

_DIGITS = re.compile(r"[0-9]+")
_BHYT_NUMBER = re.compile(r"[A-Z]{2}[1-5][0-9]{2}[A-Z0-9]{10}")
_BHYT_MIN_FIELDS = 13  # up to the five-year date; the checksum and later fields may be absent


def _stripped(text: str) -> str:
    """The scanned text without the surrounding whitespace and line breaks scanners add."""
    body = text.strip()
    if not body:
        raise ScanError("qr.empty", "The scanned code is empty.")
    return body


def parse_cccd_qr(text: str) -> CccdIdentity:
    """Parse a CCCD QR: ``id|old id|name|birth date|sex|address|issue date``.

    Seven fields is the documented layout; six means the reader left out the old-ID field; more than
    seven (new Căn cước cards) keeps the unknown trailing fields in ``extra_fields``. Dates are
    "ddmmyyyy" (birth dates may also be "mmyyyy" or "yyyy"); sex is "Nam" or "Nữ".
    """
    fields = [f.strip() for f in _stripped(text).split("|")]
    if len(fields) < 6:
        raise ScanError("qr.truncated", f"A CCCD code has 6 or 7 fields, this one has {len(fields)}.")
    if len(fields) == 6:
        fields.insert(1, "")
    cccd, old_id, name, birth, sex, address, issued, *extra = fields
    if not re.fullmatch(r"[0-9]{12}", cccd):
        raise ScanError("cccd.bad_id", f"A CCCD number has 12 digits, got {cccd!r}.", "cccd")
    if old_id and not re.fullmatch(r"[0-9]{9}|[0-9]{12}", old_id):
        raise ScanError("cccd.bad_old_id", f"An old ID number has 9 or 12 digits, got {old_id!r}.", "old_id")
    full_name = normalize_name(name)
    if not full_name:
        raise ScanError("cccd.missing_name", "The CCCD code has no name.", "full_name")
    return CccdIdentity(
        cccd=cccd,
        old_id=old_id or None,
        full_name=full_name,
        birth_date=_partial_date(birth, "cccd.bad_date", "birth_date"),
        sex=_sex(sex, "cccd.bad_sex"),
        address=_clean_text(address),
        issue_date=_full_date(issued, "cccd.bad_date", "issue_date"),
        extra_fields=tuple(extra),
    )


def parse_bhyt_number(text: str) -> BhytNumber:
    """Validate a BHYT card number, scanned or typed (spaces ignored, letters upper-cased).

    Newborns get temporary ``TE1`` cards with a 10-digit number; old cards may have letters in the
    last 10 characters, so those are checked as letters or digits only.
    """
    value = re.sub(r"\s", "", text).upper()
    if not _BHYT_NUMBER.fullmatch(value):
        raise ScanError("bhyt.bad_card_number", _bhyt_number_problem(value), "card_number")
    return BhytNumber(value, value[:2], int(value[2]), value[3:5], value[5:])


def _bhyt_number_problem(value: str) -> str:
    if len(value) != 15:
        return f"A BHYT card number has 15 characters, got {len(value)} in {value!r}."
    if not value[:2].isalpha() or not value[:2].isascii():
        return f"A BHYT card number starts with a 2-letter group code, got {value[:2]!r}."
    if value[2] not in "12345":
        return f"The benefit level (3rd character) is 1 to 5, got {value[2]!r}."
    if not _DIGITS.fullmatch(value[3:5]):
        return f"The province code (4th-5th characters) is 2 digits, got {value[3:5]!r}."
    return f"The last 10 characters are letters or digits, got {value[5:]!r}."


def parse_bhyt_qr(text: str) -> BhytIdentity:
    """Parse a BHYT card QR: ``|``-separated fields ending with ``$`` (trailing whitespace ignored).

    Positions: card number | name (hex of UTF-8) | birth date (dd/mm/yyyy or yyyy) | sex (1 male,
    2 female) | address (hex) | registered facility "01 - 043" | valid from | valid to | issue date |
    management code | guardian name (hex, "-" when none) | living-area code [unconfirmed] |
    five-year date | checksum | ``$``. Fields after the checksum are kept in ``extra_fields``.
    """
    body = _stripped(text)
    terminated = body.endswith("$")
    fields = [f.strip() for f in body.removesuffix("$").removesuffix("|").split("|")]
    if len(fields) < _BHYT_MIN_FIELDS:
        raise ScanError(
            "qr.truncated", f"A BHYT code has at least {_BHYT_MIN_FIELDS} fields, this one has {len(fields)}."
        )
    if not terminated:
        raise ScanError("bhyt.missing_terminator", "A BHYT code ends with '$'; the scan may be cut off.")
    number = parse_bhyt_number(fields[0])
    full_name = normalize_name(_hex_text(fields[1], "full_name"))
    if not full_name:
        raise ScanError("bhyt.missing_name", "The BHYT code has no name.", "full_name")
    return BhytIdentity(
        card_number=number.value,
        group_code=number.group_code,
        benefit_level=number.benefit_level,
        benefit_rate=number.benefit_rate,
        province_code=number.province_code,
        insured_id=number.insured_id,
        full_name=full_name,
        birth_date=_partial_date(fields[2], "bhyt.bad_date", "birth_date"),
        sex=_sex(fields[3], "bhyt.bad_sex"),
        address=_clean_text(_hex_text(fields[4], "address")),
        registered_facility=_facility(fields[5]),
        valid_from=_full_date(fields[6], "bhyt.bad_date", "valid_from"),
        valid_to=_full_date(fields[7], "bhyt.bad_date", "valid_to"),
        issue_date=_full_date(fields[8], "bhyt.bad_date", "issue_date"),
        management_code=fields[9] or None,
        guardian_name=normalize_name(_hex_text(_dash_empty(fields[10]), "guardian_name")) or None,
        living_area_code=fields[11] or None,
        five_year_date=_full_date(_dash_empty(fields[12]), "bhyt.bad_date", "five_year_date"),
        checksum=(fields[13] if len(fields) > 13 else "") or None,
        extra_fields=tuple(fields[14:]),
    )


def parse_scan(text: str) -> CccdIdentity | BhytIdentity:
    """Parse whatever the reception scanner read, choosing the card by the shape of its first field.

    A CCCD code starts with its 12-digit number; a BHYT code starts with a card number (two letters
    and a digit). Anything else, or text without ``|`` separators, is ``qr.unknown_format``.
    """
    first, separator, _ = _stripped(text).partition("|")
    if separator and _DIGITS.fullmatch(first.strip()):
        return parse_cccd_qr(text)
    if separator and re.match(r"[A-Za-z]{2}[0-9]", first.strip()):
        return parse_bhyt_qr(text)
    raise ScanError("qr.unknown_format", "The scanned code is neither a CCCD nor a BHYT card QR code.")


def _dash_empty(value: str) -> str:
    """BHYT codes write "-" for an absent guardian or five-year date."""
    return "" if value == "-" else value


def _clean_text(value: str) -> str:
    return " ".join(unicodedata.normalize("NFC", value).split())


def _hex_text(value: str, field: str) -> str:
    """Decode a field written as the hex digits of its UTF-8 bytes ("4cc3aa" → "Lê")."""
    try:
        return bytes.fromhex(value).decode("utf-8")
    except ValueError as exc:  # odd length, non-hex digit, or bytes that are not UTF-8
        raise ScanError("bhyt.bad_hex", f"The {field} field is not hex-encoded UTF-8 text.", field) from exc


def _partial_date(value: str, code: str, field: str) -> PartialDate:
    try:
        return PartialDate.parse(value)
    except ValueError as exc:
        raise ScanError(code, f"The {field} field is not a valid date: {value!r}.", field) from exc


def _full_date(value: str, code: str, field: str) -> date | None:
    """A complete date, or None for an empty field."""
    if not value:
        return None
    full = _partial_date(value, code, field).to_date()
    if full is None:
        raise ScanError(code, f"The {field} field needs day, month and year: {value!r}.", field)
    return full


def _sex(value: str, code: str) -> Sex:
    """Map "Nam"/"1" to male and "Nữ"/"2" to female (CCCD codes use words, BHYT codes digits)."""
    word = fold(value)
    if word in ("nam", "1"):
        return "male"
    if word in ("nu", "2"):
        return "female"
    raise ScanError(code, f"Sex must be Nam/Nữ or 1/2, got {value!r}.", "sex")


def _facility(value: str) -> RegisteredFacility:
    """Split "01 - 043" (also "01-043", an en dash, or "01043"); unknown shapes keep only ``raw``."""
    m = re.fullmatch(r"([0-9]{2})\s*[-\u2013]?\s*([0-9A-Z]{3})", value.strip())
    return RegisteredFacility(value, m.group(1), m.group(2)) if m else RegisteredFacility(value, None, None)


# --- cross-checks ----------------------------------------------------------------------------------


def identity_conflicts(cccd: CccdIdentity | None, bhyt: BhytIdentity | None, on: date) -> list[Conflict]:
    """List what the clerk must resolve before registering a visit on ``on``.

    Codes: ``name_mismatch`` (compared without diacritics, case or spaces), ``birth_date_mismatch``
    (a year-only date agrees with any date in that year), ``sex_mismatch``, ``bhyt_not_yet_valid``,
    ``bhyt_expired`` (the card is valid through its ``valid_to`` day), and ``cccd_number_mismatch``
    when the CCCD number's sex/century digit and birth-year digits disagree with the card's data.
    """
    conflicts: list[Conflict] = []
    if cccd is not None:
        conflicts.extend(_cccd_number_conflicts(cccd))
    if cccd is not None and bhyt is not None:
        if fold(cccd.full_name).replace(" ", "") != fold(bhyt.full_name).replace(" ", ""):
            conflicts.append(
                Conflict(
                    "name_mismatch",
                    "The names on the CCCD and BHYT cards differ.",
                    cccd.full_name,
                    bhyt.full_name,
                )
            )
        if not cccd.birth_date.agrees_with(bhyt.birth_date):
            conflicts.append(
                Conflict(
                    "birth_date_mismatch",
                    "The birth dates on the CCCD and BHYT cards differ.",
                    cccd.birth_date.iso(),
                    bhyt.birth_date.iso(),
                )
            )
        if cccd.sex != bhyt.sex:
            conflicts.append(
                Conflict("sex_mismatch", "The CCCD and BHYT cards give different sexes.", cccd.sex, bhyt.sex)
            )
    if bhyt is not None:
        if bhyt.valid_from is not None and on < bhyt.valid_from:
            conflicts.append(
                Conflict(
                    "bhyt_not_yet_valid",
                    f"The BHYT card is valid from {bhyt.valid_from:%d/%m/%Y}.",
                    bhyt_value=bhyt.valid_from.isoformat(),
                )
            )
        if bhyt.valid_to is not None and on > bhyt.valid_to:
            conflicts.append(
                Conflict(
                    "bhyt_expired",
                    f"The BHYT card expired on {bhyt.valid_to:%d/%m/%Y}.",
                    bhyt_value=bhyt.valid_to.isoformat(),
                )
            )
    return conflicts


def _cccd_number_conflicts(cccd: CccdIdentity) -> list[Conflict]:
    """Check the CCCD number's structure: 3-digit birth province, sex/century digit, 2-digit birth year.

    The 4th digit is 0/1 for men/women born 1900-1999, 2/3 for 2000-2099, 4/5 for 2100-2199, and so on.
    """
    code = int(cccd.cccd[3])
    century = 1900 + 100 * (code // 2)
    sex: Sex = "male" if code % 2 == 0 else "female"
    year = century + int(cccd.cccd[4:6])
    if sex == cccd.sex and year == cccd.birth_date.year:
        return []
    return [
        Conflict(
            "cccd_number_mismatch",
            f"The CCCD number encodes a {sex} born in {year}; "
            f"the card says {cccd.sex}, born in {cccd.birth_date.year}.",
            cccd_value=cccd.cccd,
        )
    ]
