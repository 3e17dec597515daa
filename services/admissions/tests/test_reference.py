"""Integrity of the province list and of the demo hospital's departments, rooms, wards and beds."""

import re
import unicodedata
from collections import Counter

from hospital.admissions.domain.identity import parse_bhyt_number
from hospital.admissions.domain.names import fold
from hospital.admissions.domain.reference import (
    beds,
    clinic_rooms,
    departments,
    new_province_of,
    province,
    provinces,
    provinces_since_2025,
    ward_rooms,
    wards,
)


def duplicates(values) -> list:
    return [value for value, count in Counter(values).items() if count > 1]


# --- provinces -------------------------------------------------------------------------------------


def test_63_provinces_with_unique_two_digit_codes_and_names() -> None:
    all_provinces = provinces()
    assert len(all_provinces) == 63
    assert duplicates(p.code for p in all_provinces) == []
    assert duplicates(fold(p.name) for p in all_provinces) == []
    assert all(re.fullmatch(r"[0-9]{2}", p.code) for p in all_provinces)
    assert [p.code for p in all_provinces] == sorted(p.code for p in all_provinces)
    assert all(unicodedata.is_normalized("NFC", p.name) for p in all_provinces)


def test_known_province_codes() -> None:
    expected = {
        "01": "Hà Nội",
        "31": "Hải Phòng",
        "36": "Nam Định",
        "38": "Thanh Hóa",
        "48": "Đà Nẵng",
        "66": "Đắk Lắk",
        "79": "Hồ Chí Minh",
        "92": "Cần Thơ",
        "96": "Cà Mau",
    }
    assert {code: province(code).name for code in expected} == expected
    assert province("03") is None
    assert province("99") is None


def test_centrally_run_cities() -> None:
    assert {p.name for p in provinces() if p.is_city} == {
        "Hà Nội",
        "Hải Phòng",
        "Huế",
        "Đà Nẵng",
        "Hồ Chí Minh",
        "Cần Thơ",
    }
    assert province("01").full_name == "Thành phố Hà Nội"
    assert province("36").full_name == "Tỉnh Nam Định"


def test_bhyt_card_province_resolves() -> None:
    assert province(parse_bhyt_number("HS4010120878811").province_code).name == "Hà Nội"
    assert province(parse_bhyt_number("TE1790123456789").province_code).name == "Hồ Chí Minh"


def test_2025_merger_covers_every_old_province_once() -> None:
    merged = provinces_since_2025()
    assert len(merged) == 34
    assert duplicates(p.name for p in merged) == []
    old_codes = [code for p in merged for code in p.merged_from]
    assert sorted(old_codes) == sorted(p.code for p in provinces())
    assert sum(len(p.merged_from) == 1 for p in merged) == 11  # provinces left unchanged
    assert sum(p.is_city for p in merged) == 6


def test_new_province_of_old_code() -> None:
    assert new_province_of("36").name == "Ninh Bình"  # Nam Định
    assert new_province_of("74").name == "Hồ Chí Minh"  # Bình Dương
    assert new_province_of("74").full_name == "Thành phố Hồ Chí Minh"
    assert new_province_of("52").name == "Gia Lai"  # Bình Định
    assert new_province_of("40").name == "Nghệ An"
    assert new_province_of("99") is None
    for new in provinces_since_2025():
        for code in new.merged_from:
            assert new_province_of(code) is new


# --- the demo hospital -----------------------------------------------------------------------------


def test_departments() -> None:
    all_departments = departments()
    assert duplicates(d.code for d in all_departments) == []
    assert duplicates(d.name for d in all_departments) == []
    assert all(d.name.startswith("Khoa ") for d in all_departments)
    names = {d.name for d in all_departments}
    assert {
        "Khoa Khám bệnh",
        "Khoa Nội tổng hợp",
        "Khoa Ngoại tổng hợp",
        "Khoa Sản",
        "Khoa Nhi",
        "Khoa Cấp cứu",
        "Khoa Xét nghiệm",
        "Khoa Chẩn đoán hình ảnh",
    } <= names
    assert {d.kind for d in all_departments} == {"clinical", "paraclinical", "support"}


def test_clinic_rooms() -> None:
    rooms = clinic_rooms()
    by_code = {d.code: d for d in departments()}
    assert 18 <= len(rooms) <= 25
    assert duplicates(r.code for r in rooms) == []
    assert duplicates(r.name for r in rooms) == []
    assert all(re.fullmatch(r"P[0-9]{3}", r.code) for r in rooms)
    assert all(r.name.startswith("Phòng khám ") for r in rooms)
    assert all(r.department_code in by_code for r in rooms)
    assert all(by_code[r.specialty_code].kind == "clinical" for r in rooms)
    assert ("P101", "Phòng khám Nội 1") in {(r.code, r.name) for r in rooms}


def test_wards_belong_to_clinical_departments() -> None:
    by_code = {d.code: d for d in departments()}
    assert duplicates(w.code for w in wards()) == []
    assert duplicates(w.name for w in wards()) == []
    assert all(by_code[w.department_code].kind == "clinical" for w in wards())
    inpatient = {w.department_code for w in wards()}
    clinical = {d.code for d in departments() if d.kind == "clinical"}
    assert clinical - inpatient == {"KKB"}  # every clinical department but outpatients has beds


def test_ward_rooms() -> None:
    ward_codes = {w.code for w in wards()}
    rooms = ward_rooms()
    assert duplicates(r.code for r in rooms) == []
    assert all(r.ward_code in ward_codes for r in rooms)
    assert all(r.code.startswith(f"{r.ward_code}-") for r in rooms)
    assert duplicates(r.name for r in rooms) == []  # room numbers are unique across the hospital


def test_beds() -> None:
    all_beds = beds()
    rooms = {r.code: r for r in ward_rooms()}
    assert 850 <= len(all_beds) <= 950
    assert duplicates(b.code for b in all_beds) == []
    assert all(re.fullmatch(r"[A-Z]+-[0-9]{3}-[0-9]{2}", b.code) for b in all_beds)
    assert all(rooms[b.room_code].ward_code == b.ward_code for b in all_beds)
    assert all(b.code.startswith(f"{b.room_code}-") for b in all_beds)
    assert "NOI-101-01" in {b.code for b in all_beds}
    beds_per_room = Counter(b.room_code for b in all_beds)
    assert set(beds_per_room) == set(rooms)
    assert all(1 <= count <= 12 for count in beds_per_room.values())


def test_every_ward_has_beds() -> None:
    assert {b.ward_code for b in beds()} == {w.code for w in wards()}
