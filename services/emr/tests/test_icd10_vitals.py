"""ICD-10 search by code or by name typed with or without diacritics, and the vital-sign rules."""

from __future__ import annotations

import pytest

from hospital.chassis.errors import Invalid
from hospital.emr.domain import icd10, vitals


def test_search_by_code_prefix_in_any_form() -> None:
    assert [c.code for c in icd10.search("J18")] == ["J18.0", "J18.9"]
    assert [c.code for c in icd10.search("j18.9")] == ["J18.9"]
    assert [c.code for c in icd10.search("J189")] == ["J18.9"]
    assert [c.code for c in icd10.search("i10")] == ["I10"]


def test_search_by_name_with_or_without_diacritics() -> None:
    with_marks = [c.code for c in icd10.search("viêm phổi")]
    assert (
        with_marks
        == [c.code for c in icd10.search("viem phoi")]
        == [c.code for c in icd10.search("VIEM PHOI")]
    )
    assert {"J18.9", "J18.0", "J12.9", "J15.9"} <= set(with_marks)
    assert with_marks[0] in {"J12.9", "J15.9", "J18.9"}  # names that start with the phrase come first
    assert "E11.9" in [c.code for c in icd10.search("dai thao duong khong phu thuoc", 50)]
    assert icd10.search("tang huyet")[0].code == "I10"
    assert icd10.search("   ") == [] and icd10.search("zzzz khong co") == []


def test_shipped_list_is_well_formed() -> None:
    codes = icd10.codes()
    assert len(codes) >= 250
    assert codes["I10"].name_vi == "Bệnh lý tăng huyết áp vô căn (nguyên phát)"
    assert all(c.name_vi and c.chapter and c.block for c in codes.values())
    assert icd10.lookup("e119") is codes["E11.9"] and icd10.lookup("X99.9") is None


def test_vitals_flags_bmi_and_limits() -> None:
    bmi, flags = vitals.check(
        {
            "systolic_bp": 120,
            "diastolic_bp": 80,
            "pulse": 72,
            "temperature_c": 36.8,
            "spo2": 98,
            "respiratory_rate": 16,
            "weight_kg": 55,
            "height_cm": 160,
        }
    )
    assert bmi == 21.5 and flags == []
    bmi, flags = vitals.check(
        {"systolic_bp": 68, "spo2": 85, "temperature_c": 40.2, "weight_kg": 80, "height_cm": 170}
    )
    assert {(f.field, f.flag) for f in flags} == {
        ("systolic_bp", "LL"),
        ("spo2", "LL"),
        ("temperature_c", "HH"),
        ("bmi", "H"),
    }
    assert bmi == 27.7 and any("béo phì" in f.message for f in flags)
    with pytest.raises(Invalid) as exc:
        vitals.check({"spo2": 101})
    assert exc.value.field == "vitals.spo2"
