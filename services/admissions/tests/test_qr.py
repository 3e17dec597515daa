"""QR parsing of CCCD and BHYT cards, BHYT card numbers, and the cross-checks between them."""

import dataclasses
import unicodedata
from datetime import date

import pytest

from hospital.admissions.domain.identity import (
    BhytIdentity,
    CccdIdentity,
    PartialDate,
    RegisteredFacility,
    ScanError,
    identity_conflicts,
    parse_bhyt_number,
    parse_bhyt_qr,
    parse_cccd_qr,
    parse_scan,
)

# "Số 8 ngõ 12 Phố Huế, Phường Hàng Bài, Quận Hoàn Kiếm, Hà Nội" as hex of its UTF-8 bytes.
ADDRESS_HEX = (
    "53e1bb912038206e67c3b5203132205068e1bb91204875e1babf2c205068c6b0e1bb9d6e672048c3a06e672042c3a0692c"
    "205175e1baad6e20486fc3a06e204b69e1babf6d2c2048c3a0204ee1bb9969"
)
# The brief's real-shaped example, with an address filled in.
BRIEF_BHYT = (
    f"DN401AA31900313|4cc3aa205669e1bb87742048c6b06e67|04/09/1985|1|{ADDRESS_HEX}|01 - 043|"
    "01/07/2017|31/12/2017|21/07/2017|01059710639215|-|4|01/07/2022|1f2fa22c47f0bd18-7102|$"
)
CCCD_7 = (
    "001185012345|012345678|Nguyễn Thị Thu Hà|04091985|Nữ|"
    "Số 12 Hàng Bạc, Phường Hàng Bạc, Quận Hoàn Kiếm, Hà Nội|15082021"
)
CCCD_6 = (
    "079090001234|Trần Văn Đức|12031990|Nam|123 Lê Lợi, Phường Bến Thành, Quận 1, TP Hồ Chí Minh|20042022"
)


def bhyt_fields() -> list[str]:
    return BRIEF_BHYT.removesuffix("|$").split("|")


def bhyt_with(**changes: str) -> str:
    """The brief's BHYT code with some positions replaced, e.g. bhyt_with(f3="2")."""
    fields = bhyt_fields()
    for key, value in changes.items():
        fields[int(key[1:])] = value
    return "|".join(fields) + "|$"


def scan_error(parse, text: str) -> ScanError:
    with pytest.raises(ScanError) as info:
        parse(text)
    return info.value


# --- BHYT QR ---------------------------------------------------------------------------------------


def test_brief_bhyt_example_every_field() -> None:
    card = parse_bhyt_qr(BRIEF_BHYT)

    assert card == BhytIdentity(
        card_number="DN401AA31900313",
        group_code="DN",
        benefit_level=4,
        benefit_rate=80,
        province_code="01",
        insured_id="AA31900313",
        full_name="Lê Việt Hưng",
        birth_date=PartialDate(1985, 9, 4),
        sex="male",
        address="Số 8 ngõ 12 Phố Huế, Phường Hàng Bài, Quận Hoàn Kiếm, Hà Nội",
        registered_facility=RegisteredFacility("01 - 043", "01", "043"),
        valid_from=date(2017, 7, 1),
        valid_to=date(2017, 12, 31),
        issue_date=date(2017, 7, 21),
        management_code="01059710639215",
        guardian_name=None,
        living_area_code="4",
        five_year_date=date(2022, 7, 1),
        checksum="1f2fa22c47f0bd18-7102",
        extra_fields=(),
    )
    assert card.registered_facility.code == "01043"
    assert unicodedata.is_normalized("NFC", card.full_name)


@pytest.mark.parametrize("suffix", ["\n", "\r\n", "  \r\n\t", ""])
def test_bhyt_tolerates_trailing_whitespace(suffix: str) -> None:
    assert parse_bhyt_qr(BRIEF_BHYT + suffix).full_name == "Lê Việt Hưng"


def test_bhyt_terminator_directly_after_checksum() -> None:
    card = parse_bhyt_qr(BRIEF_BHYT.removesuffix("|$") + "$")
    assert card.checksum == "1f2fa22c47f0bd18-7102"
    assert card.extra_fields == ()


def test_bhyt_female_child_with_guardian_and_year_only_birth() -> None:
    text = bhyt_with(
        f0="TE1790123456789",
        f1="4e677579e1bb856e205468e1bb8b204d6169",  # Nguyễn Thị Mai
        f2="2021",
        f3="2",
        f5="79-024",
        f10="4cc3aa2056c4836e205468c3a06e68",  # Lê Văn Thành
        f12="-",
    )
    card = parse_bhyt_qr(text)
    assert (card.full_name, card.sex, card.birth_date.iso()) == ("Nguyễn Thị Mai", "female", "2021")
    assert (card.group_code, card.benefit_level, card.benefit_rate) == ("TE", 1, 100)
    assert card.guardian_name == "Lê Văn Thành"
    assert card.five_year_date is None
    assert card.registered_facility == RegisteredFacility("79-024", "79", "024")


def test_bhyt_extra_trailing_fields_are_kept() -> None:
    text = BRIEF_BHYT.removesuffix("$") + "K2|v2|$"
    assert parse_bhyt_qr(text).extra_fields == ("K2", "v2")


def test_bhyt_empty_optional_fields() -> None:
    card = parse_bhyt_qr(bhyt_with(f4="", f5="", f8="", f9="", f11=""))
    assert card.address == ""
    assert card.registered_facility == RegisteredFacility("", None, None)
    assert card.registered_facility.code is None
    assert (card.issue_date, card.management_code, card.living_area_code) == (None, None, None)


@pytest.mark.parametrize(
    ("position", "value", "field"),
    [
        (1, "4cc3aa205669e1bb87742048c6b06e6", "full_name"),  # odd length
        (1, "zz", "full_name"),  # not hex
        (1, "ff", "full_name"),  # hex, but not UTF-8
        (1, "Lê Việt Hưng", "full_name"),  # plain text instead of hex
        (4, "4cc3aa2g", "address"),
        (10, "c3", "guardian_name"),  # truncated UTF-8 sequence
    ],
)
def test_bhyt_bad_hex(position: int, value: str, field: str) -> None:
    error = scan_error(parse_bhyt_qr, bhyt_with(**{f"f{position}": value}))
    assert (error.code, error.field) == ("bhyt.bad_hex", field)


def test_bhyt_missing_terminator() -> None:
    error = scan_error(parse_bhyt_qr, BRIEF_BHYT.removesuffix("$"))
    assert (error.code, error.field) == ("bhyt.missing_terminator", None)


@pytest.mark.parametrize("cut", [20, 60, 120])
def test_bhyt_truncated(cut: int) -> None:
    assert scan_error(parse_bhyt_qr, BRIEF_BHYT[:cut]).code == "qr.truncated"


@pytest.mark.parametrize(
    ("changes", "code", "field"),
    [
        ({"f0": "DN601AA31900313"}, "bhyt.bad_card_number", "card_number"),
        ({"f2": "31/02/1985"}, "bhyt.bad_date", "birth_date"),
        ({"f3": "3"}, "bhyt.bad_sex", "sex"),
        ({"f6": "2017"}, "bhyt.bad_date", "valid_from"),
        ({"f7": "31-12-2017"}, "bhyt.bad_date", "valid_to"),
        ({"f12": "01/13/2022"}, "bhyt.bad_date", "five_year_date"),
        ({"f1": ""}, "bhyt.missing_name", "full_name"),
    ],
)
def test_bhyt_bad_fields(changes: dict[str, str], code: str, field: str) -> None:
    error = scan_error(parse_bhyt_qr, bhyt_with(**changes))
    assert (error.code, error.field) == (code, field)
    assert str(error)  # a human message for the clerk


# --- CCCD QR ---------------------------------------------------------------------------------------


def test_cccd_seven_fields() -> None:
    assert parse_cccd_qr(CCCD_7) == CccdIdentity(
        cccd="001185012345",
        old_id="012345678",
        full_name="Nguyễn Thị Thu Hà",
        birth_date=PartialDate(1985, 9, 4),
        sex="female",
        address="Số 12 Hàng Bạc, Phường Hàng Bạc, Quận Hoàn Kiếm, Hà Nội",
        issue_date=date(2021, 8, 15),
        extra_fields=(),
    )


def test_cccd_six_fields_have_no_old_id() -> None:
    card = parse_cccd_qr(CCCD_6)
    assert (card.cccd, card.old_id, card.full_name) == ("079090001234", None, "Trần Văn Đức")
    assert (card.birth_date, card.sex, card.issue_date) == (
        PartialDate(1990, 3, 12),
        "male",
        date(2022, 4, 20),
    )
    assert card.address == "123 Lê Lợi, Phường Bến Thành, Quận 1, TP Hồ Chí Minh"


def test_cccd_seven_fields_with_empty_old_id() -> None:
    card = parse_cccd_qr("038302004321||Lê Thị Ngọc Ánh|2002|Nữ|Thôn 3, Xã Quảng Tâm, Thanh Hóa|")
    assert (card.old_id, card.birth_date.iso(), card.issue_date) == (None, "2002", None)


def test_cccd_extra_trailing_fields_are_kept() -> None:
    card = parse_cccd_qr(CCCD_7 + "|Hà Nội|0912345678\n")
    assert card.full_name == "Nguyễn Thị Thu Hà"
    assert card.extra_fields == ("Hà Nội", "0912345678")


def test_cccd_name_is_normalised_to_nfc_with_capitals() -> None:
    decomposed = unicodedata.normalize("NFD", CCCD_7.replace("Nguyễn Thị Thu Hà", "NGUYỄN  THỊ thu hà"))
    card = parse_cccd_qr(decomposed)
    assert card.full_name == "Nguyễn Thị Thu Hà"
    assert unicodedata.is_normalized("NFC", card.full_name)
    assert unicodedata.is_normalized("NFC", card.address)


@pytest.mark.parametrize(
    ("text", "code", "field"),
    [
        (CCCD_7.replace("001185012345", "00118501234"), "cccd.bad_id", "cccd"),
        (CCCD_7.replace("001185012345", "00118501234X"), "cccd.bad_id", "cccd"),
        (CCCD_7.replace("012345678", "01234567A"), "cccd.bad_old_id", "old_id"),
        (CCCD_7.replace("04091985", "31021985"), "cccd.bad_date", "birth_date"),
        (CCCD_7.replace("04091985", "4/9/85"), "cccd.bad_date", "birth_date"),
        (CCCD_7.replace("15082021", "2021"), "cccd.bad_date", "issue_date"),
        (CCCD_7.replace("|Nữ|", "|F|"), "cccd.bad_sex", "sex"),
        (CCCD_7.replace("Nguyễn Thị Thu Hà", " "), "cccd.missing_name", "full_name"),
        ("001185012345|012345678|Nguyễn Thị Thu Hà|04091985|Nữ", "qr.truncated", None),
    ],
)
def test_cccd_malformed(text: str, code: str, field: str | None) -> None:
    error = scan_error(parse_cccd_qr, text)
    assert (error.code, error.field) == (code, field)


# --- choosing the parser ---------------------------------------------------------------------------


def test_parse_scan_chooses_by_shape() -> None:
    assert isinstance(parse_scan(BRIEF_BHYT + "\r\n"), BhytIdentity)
    assert isinstance(parse_scan(CCCD_7), CccdIdentity)
    assert isinstance(parse_scan(CCCD_6), CccdIdentity)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", "qr.empty"),
        (" \r\n", "qr.empty"),
        ("00020101021238530010A0000007270123000697041601092576788590208QRIBFTTA5303704", "qr.unknown_format"),
        ("https://example.vn/patient?id=1", "qr.unknown_format"),
        ("Nguyễn Văn An|1985|Nam", "qr.unknown_format"),
        ("001185012345", "qr.unknown_format"),
        ("00118501234|Nguyễn Văn An|01011985|Nam|Hà Nội|01012021", "cccd.bad_id"),
        ("DN401AA31900313|4cc3aa", "qr.truncated"),
    ],
)
def test_parse_scan_rejects(text: str, code: str) -> None:
    assert scan_error(parse_scan, text).code == code


def test_scan_error_is_a_value_error() -> None:
    error = ScanError("cccd.bad_id", "A CCCD number has 12 digits.", "cccd")
    assert isinstance(error, ValueError)
    assert (error.code, error.field, error.message, str(error)) == (
        "cccd.bad_id",
        "cccd",
        "A CCCD number has 12 digits.",
        "A CCCD number has 12 digits.",
    )


# --- BHYT card numbers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "value", "group", "level", "rate", "province", "insured"),
    [
        ("HS4010120878811", "HS4010120878811", "HS", 4, 80, "01", "0120878811"),
        ("hs 4 01 0120878811", "HS4010120878811", "HS", 4, 80, "01", "0120878811"),
        ("TE1790123456789", "TE1790123456789", "TE", 1, 100, "79", "0123456789"),  # newborn
        ("DN401AA31900313", "DN401AA31900313", "DN", 4, 80, "01", "AA31900313"),  # old card
        ("CC1360K12345678", "CC1360K12345678", "CC", 1, 100, "36", "0K12345678"),
        ("HN2381234567890", "HN2381234567890", "HN", 2, 100, "38", "1234567890"),
        ("CN3401234567890", "CN3401234567890", "CN", 3, 95, "40", "1234567890"),
        ("QN5970123456789", "QN5970123456789", "QN", 5, 100, "97", "0123456789"),
    ],
)
def test_card_number_valid(
    typed: str, value: str, group: str, level: int, rate: int, province: str, insured: str
) -> None:
    number = parse_bhyt_number(typed)
    assert (number.value, number.group_code, number.benefit_level) == (value, group, level)
    assert (number.benefit_rate, number.province_code, number.insured_id) == (rate, province, insured)


@pytest.mark.parametrize(
    ("typed", "hint"),
    [
        ("HS401012087881", "15 characters"),
        ("HS40101208788111", "15 characters"),
        ("", "15 characters"),
        ("H14010120878811", "2-letter group"),
        ("ĐN4010120878811", "2-letter group"),
        ("HS0010120878811", "benefit level"),
        ("HS6010120878811", "benefit level"),
        ("HS4A10120878811", "province code"),
        ("HS40101208788-1", "last 10"),
    ],
)
def test_card_number_invalid(typed: str, hint: str) -> None:
    error = scan_error(parse_bhyt_number, typed)
    assert (error.code, error.field) == ("bhyt.bad_card_number", "card_number")
    assert hint in error.message


# --- partial dates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("04091985", PartialDate(1985, 9, 4)),
        ("04/09/1985", PartialDate(1985, 9, 4)),
        ("4/9/1985", PartialDate(1985, 9, 4)),
        ("1985-09-04", PartialDate(1985, 9, 4)),
        ("1985", PartialDate(1985)),
        ("091985", PartialDate(1985, 9)),
        ("09/1985", PartialDate(1985, 9)),
        ("1985-09", PartialDate(1985, 9)),
    ],
)
def test_partial_date_parse(text: str, expected: PartialDate) -> None:
    assert PartialDate.parse(text) == expected


@pytest.mark.parametrize("text", ["", "85", "29021985", "1985-9-4", "04.09.1985", "19850904", "00/00/1985"])
def test_partial_date_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        PartialDate.parse(text)


def test_partial_date_iso_and_conversions() -> None:
    assert [PartialDate(1985).iso(), PartialDate(1985, 9).iso(), str(PartialDate(1985, 9, 4))] == [
        "1985",
        "1985-09",
        "1985-09-04",
    ]
    assert PartialDate(1985, 9, 4).to_date() == date(1985, 9, 4)
    assert PartialDate(1985).to_date() is None
    assert PartialDate.from_date(date(2000, 2, 29)) == PartialDate(2000, 2, 29)
    assert PartialDate(1985, 9, 4).is_complete and not PartialDate(1985, 9).is_complete
    with pytest.raises(ValueError):
        PartialDate(1985, None, 4)


def test_partial_date_agreement() -> None:
    assert PartialDate(1985).agrees_with(PartialDate(1985, 9, 4))
    assert PartialDate(1985, 9, 4).agrees_with(PartialDate(1985, 9))
    assert not PartialDate(1985, 9, 4).agrees_with(PartialDate(1985, 9, 5))
    assert not PartialDate(1985).agrees_with(PartialDate(1986, 9, 4))


# --- conflicts -------------------------------------------------------------------------------------

HUNG_CCCD = CccdIdentity(
    cccd="001085009876",
    old_id=None,
    full_name="Lê Việt Hưng",
    birth_date=PartialDate(1985, 9, 4),
    sex="male",
    address="Hà Nội",
    issue_date=date(2021, 5, 10),
)
VISIT_DAY = date(2017, 10, 2)


def codes(conflicts: list) -> list[str]:
    return [c.code for c in conflicts]


def test_matching_documents_have_no_conflicts() -> None:
    assert identity_conflicts(HUNG_CCCD, parse_bhyt_qr(BRIEF_BHYT), VISIT_DAY) == []
    assert identity_conflicts(None, None, VISIT_DAY) == []


def test_names_compared_without_diacritics_case_or_spaces() -> None:
    bhyt = parse_bhyt_qr(BRIEF_BHYT)
    for name in ["LÊ VIỆT HƯNG", "Le Viet Hung", "Lê  ViệtHưng"]:
        cccd = dataclasses.replace(HUNG_CCCD, full_name=name)
        assert identity_conflicts(cccd, bhyt, VISIT_DAY) == []


def test_each_mismatch_is_reported_with_both_values() -> None:
    cccd = dataclasses.replace(
        HUNG_CCCD,
        cccd="001185009876",
        full_name="Lê Việt Hương",
        birth_date=PartialDate(1985, 4, 9),
        sex="female",
    )
    conflicts = identity_conflicts(cccd, parse_bhyt_qr(BRIEF_BHYT), VISIT_DAY)
    assert codes(conflicts) == ["name_mismatch", "birth_date_mismatch", "sex_mismatch"]
    assert (conflicts[0].cccd_value, conflicts[0].bhyt_value) == ("Lê Việt Hương", "Lê Việt Hưng")
    assert (conflicts[1].cccd_value, conflicts[1].bhyt_value) == ("1985-04-09", "1985-09-04")
    assert (conflicts[2].cccd_value, conflicts[2].bhyt_value) == ("female", "male")


def test_year_only_birth_date_agrees_with_full_date() -> None:
    bhyt = dataclasses.replace(parse_bhyt_qr(BRIEF_BHYT), birth_date=PartialDate(1985))
    assert identity_conflicts(HUNG_CCCD, bhyt, VISIT_DAY) == []
    older = dataclasses.replace(bhyt, birth_date=PartialDate(1984))
    assert codes(identity_conflicts(HUNG_CCCD, older, VISIT_DAY)) == ["birth_date_mismatch"]


@pytest.mark.parametrize(
    ("on", "expected"),
    [
        (date(2017, 6, 30), ["bhyt_not_yet_valid"]),
        (date(2017, 7, 1), []),
        (date(2017, 12, 31), []),
        (date(2018, 1, 1), ["bhyt_expired"]),
    ],
)
def test_bhyt_validity_window(on: date, expected: list[str]) -> None:
    conflicts = identity_conflicts(None, parse_bhyt_qr(BRIEF_BHYT), on)
    assert codes(conflicts) == expected


def test_expired_card_reports_the_end_date() -> None:
    (conflict,) = identity_conflicts(None, parse_bhyt_qr(BRIEF_BHYT), date(2024, 3, 1))
    assert conflict.bhyt_value == "2017-12-31"
    assert "31/12/2017" in conflict.message


@pytest.mark.parametrize(
    ("cccd", "sex", "year", "consistent"),
    [
        ("001085009876", "male", 1985, True),
        ("001185009876", "female", 1985, True),
        ("036305001234", "female", 2005, True),
        ("036205001234", "male", 2005, True),
        ("001085009876", "female", 1985, False),
        ("001086009876", "male", 1985, False),
        ("036005001234", "male", 2005, False),
    ],
)
def test_cccd_number_structure(cccd: str, sex: str, year: int, consistent: bool) -> None:
    card = dataclasses.replace(HUNG_CCCD, cccd=cccd, sex=sex, birth_date=PartialDate(year))
    assert codes(identity_conflicts(card, None, VISIT_DAY)) == (
        [] if consistent else ["cccd_number_mismatch"]
    )
