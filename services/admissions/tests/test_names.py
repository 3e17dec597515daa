"""Vietnamese name normalisation, folding, search ranking and duplicate detection."""

import unicodedata
from datetime import date

import pytest

from hospital.admissions.domain.identity import PartialDate
from hospital.admissions.domain.names import (
    PersonFacts,
    fold,
    looks_like_duplicate,
    name_match_score,
    normalize_name,
    normalize_phone,
    search_tokens,
)


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("Nguyễn Văn An", "nguyen van an"),
        ("Đặng Thị Đào", "dang thi dao"),
        ("  TRẦN   Thị\tBÍCH  Ngọc ", "tran thi bich ngoc"),
        ("Huỳnh Ưu Ơn", "huynh uu on"),
        (unicodedata.normalize("NFD", "Phạm Thị Hằng"), "pham thi hang"),
        ("Hoàng Thị Hoà", "hoang thi hoa"),
        ("Hoàng Thị Hòa", "hoang thi hoa"),
        ("", ""),
    ],
)
def test_fold(text: str, folded: str) -> None:
    assert fold(text) == folded
    assert fold(text).isascii()


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("nguyễn văn  AN", "Nguyễn Văn An"),
        ("ĐẶNG THỊ ĐÀO", "Đặng Thị Đào"),
        ("  lê   việt hưng ", "Lê Việt Hưng"),
        (unicodedata.normalize("NFD", "ẩu ỷ ước"), "Ẩu Ỷ Ước"),
        ("h'hen niê", "H'Hen Niê"),
        ("nguyễn-trần văn an", "Nguyễn-Trần Văn An"),
        ("", ""),
    ],
)
def test_normalize_name(text: str, normalized: str) -> None:
    result = normalize_name(text)
    assert result == normalized
    assert unicodedata.is_normalized("NFC", result)


def test_search_tokens() -> None:
    assert search_tokens("Nguyễn  Văn An") == ("nguyen", "van", "an")
    assert search_tokens("H'Hen Niê") == ("h", "hen", "nie")
    assert search_tokens(" - ") == ()


# Forty-eight patients, with the near-collisions a reception desk meets daily.
PATIENTS = [
    "Nguyễn Văn An",
    "Nguyễn Văn Ân",
    "Nguyễn Văn Anh",
    "Nguyễn Thị An",
    "Trần Văn An",
    "Nguyễn Thị Thu Hà",
    "Nguyễn Thị Hà",
    "Nguyễn Thu Hà",
    "Nguyễn Thị Thu Hằng",
    "Lê Việt Hưng",
    "Lê Văn Hưng",
    "Lê Thị Hương",
    "Đặng Thị Đào",
    "Đặng Văn Đạo",
    "Phạm Minh Tuấn",
    "Phạm Minh Tuân",
    "Hoàng Thị Hoà",
    "Hoàng Văn Hải",
    "Vũ Đức Thắng",
    "Võ Đức Thắng",
    "Bùi Thị Xuân",
    "Đỗ Quang Huy",
    "Hồ Thị Mỹ Linh",
    "Huỳnh Tấn Phát",
    "Phan Thanh Bình",
    "Đinh Công Tráng",
    "Lý Thị Kim Ngân",
    "Trương Văn Lâm",
    "Lương Thị Nga",
    "Mai Xuân Thưởng",
    "Tô Thị Lan",
    "Cao Văn Sơn",
    "Quách Thị Hạnh",
    "Thái Bá Dũng",
    "Hà Thị Thu Trang",
    "Trần Thị Khuê",
    "Ngô Bảo Châu",
    "Dương Văn Minh",
    "Đoàn Thị Điểm",
    "Kiều Thị Loan",
    "Triệu Thị Trinh",
    "La Văn Cầu",
    "H'Hen Niê",
    "Nông Văn Dền",
    "Lò Văn Pọm",
    "Chu Văn An",
    "Nguyễn Đình Chiểu",
    "Nguyễn An Ninh",
]

# (query, intended patient): each intended patient must rank first, strictly.
QUERIES = [
    ("Nguyễn Văn An", "Nguyễn Văn An"),
    ("Nguyễn Văn Ân", "Nguyễn Văn Ân"),
    ("nguyen van anh", "Nguyễn Văn Anh"),
    ("nguyen thi an", "Nguyễn Thị An"),
    ("tran van an", "Trần Văn An"),
    ("nguyen thi thu ha", "Nguyễn Thị Thu Hà"),
    ("ng t thu ha", "Nguyễn Thị Thu Hà"),
    ("nguyen thi ha", "Nguyễn Thị Hà"),
    ("NGUYEN THU HA", "Nguyễn Thu Hà"),
    ("nguyen thi thu hang", "Nguyễn Thị Thu Hằng"),
    ("le viet hung", "Lê Việt Hưng"),
    ("hung le viet", "Lê Việt Hưng"),
    ("le van hung", "Lê Văn Hưng"),
    ("le thi huong", "Lê Thị Hương"),
    ("dang thi dao", "Đặng Thị Đào"),
    ("DANG VAN DAO", "Đặng Văn Đạo"),
    ("Phạm Minh Tuấn", "Phạm Minh Tuấn"),
    ("Phạm Minh Tuân", "Phạm Minh Tuân"),
    ("Hoàng Thị Hòa", "Hoàng Thị Hoà"),
    ("hoang hai", "Hoàng Văn Hải"),
    ("vu duc thang", "Vũ Đức Thắng"),
    ("vo duc thang", "Võ Đức Thắng"),
    ("bui xuan", "Bùi Thị Xuân"),
    ("do quang huy", "Đỗ Quang Huy"),
    ("ho thi my linh", "Hồ Thị Mỹ Linh"),
    ("huynh tan phat", "Huỳnh Tấn Phát"),
    ("phan thanh binh", "Phan Thanh Bình"),
    ("dinh cong trang", "Đinh Công Tráng"),
    ("ly thi kim ngan", "Lý Thị Kim Ngân"),
    ("truong lam", "Trương Văn Lâm"),
    ("luong thi nga", "Lương Thị Nga"),
    ("mai xuan thuong", "Mai Xuân Thưởng"),
    ("to thi lan", "Tô Thị Lan"),
    ("cao van son", "Cao Văn Sơn"),
    ("quach thi hanh", "Quách Thị Hạnh"),
    ("thai ba dung", "Thái Bá Dũng"),
    ("ha thi thu trang", "Hà Thị Thu Trang"),
    ("khue", "Trần Thị Khuê"),
    ("ngo bao chau", "Ngô Bảo Châu"),
    ("duong van minh", "Dương Văn Minh"),
    ("doan thi diem", "Đoàn Thị Điểm"),
    ("kieu loan", "Kiều Thị Loan"),
    ("trieu thi trinh", "Triệu Thị Trinh"),
    ("la van cau", "La Văn Cầu"),
    ("hen nie", "H'Hen Niê"),
    ("nong van den", "Nông Văn Dền"),
    ("lo van pom", "Lò Văn Pọm"),
    ("chu van an", "Chu Văn An"),
    ("nguyen dinh chieu", "Nguyễn Đình Chiểu"),
    ("nguyen an ninh", "Nguyễn An Ninh"),
    ("Nguyen Van Ân", "Nguyễn Văn Ân"),
]


def ranked(query: str) -> list[tuple[float, str]]:
    return sorted(((name_match_score(query, name), name) for name in PATIENTS), reverse=True)


@pytest.mark.parametrize(("query", "intended"), QUERIES)
def test_intended_patient_ranks_first(query: str, intended: str) -> None:
    (best_score, best), (runner_up_score, runner_up) = ranked(query)[:2]
    assert best == intended
    assert best_score > runner_up_score, f"{intended} ties with {runner_up}"


def test_fixture_is_large_enough() -> None:
    assert len(set(PATIENTS)) == len(PATIENTS) >= 40
    assert {intended for _, intended in QUERIES} <= set(PATIENTS)


def test_query_without_diacritics_finds_every_spelling() -> None:
    top = ranked("nguyen van an")
    assert {name for _, name in top[:2]} == {"Nguyễn Văn An", "Nguyễn Văn Ân"}
    assert top[0][0] == top[1][0] == 1.0
    assert top[2][1] == "Nguyễn Văn Anh"


def test_diacritic_exact_match_beats_folded_match_slightly() -> None:
    exact = name_match_score("Nguyễn Văn An", "Nguyễn Văn An")
    folded_only = name_match_score("Nguyễn Văn An", "Nguyễn Văn Ân")
    assert exact == 1.0
    assert 0.9 <= folded_only < exact
    assert folded_only > name_match_score("Nguyễn Văn An", "Nguyễn Văn Anh")


def test_tone_mark_placement_does_not_matter() -> None:
    assert name_match_score("Hoàng Thị Hòa", "Hoàng Thị Hoà") == 1.0
    assert name_match_score("Lý Thị Thuý", "Lý Thị Thúy") == 1.0


def test_tiers_are_ordered() -> None:
    name = "Nguyễn Văn An"
    exact = name_match_score("nguyen van an", name)
    in_order = name_match_score("nguyen an", name)
    given_name = name_match_score("an nguyen", name)
    partial = name_match_score("an tran", name)
    assert exact == 1.0
    assert 0.70 <= in_order <= 0.85
    assert 0.50 <= given_name <= 0.65
    assert 0.0 < partial < 0.45
    assert name_match_score("binh", name) == 0.0


def test_prefixes_typed_in_order() -> None:
    assert name_match_score("ng v an", "Nguyễn Văn An") >= 0.70
    assert name_match_score("v ng", "Nguyễn Văn An") < 0.70
    # A word still being typed with its diacritics prefers names that carry them.
    assert name_match_score("Nguyê", "Nguyễn Văn An") > name_match_score("Nguyê", "Nguyen Van An")


def test_given_name_query_prefers_the_given_name() -> None:
    assert name_match_score("an", "Nguyễn Văn An") > name_match_score("an", "An Văn Bình")
    assert name_match_score("an", "Nguyễn Văn An") > name_match_score("an", "Nguyễn Văn Anh")


def test_scores_stay_in_unit_interval() -> None:
    for query, _ in QUERIES:
        for name in PATIENTS:
            assert 0.0 <= name_match_score(query, name) <= 1.0
    assert name_match_score("", "Nguyễn Văn An") == 0.0
    assert name_match_score("an", "") == 0.0


# --- duplicates ------------------------------------------------------------------------------------


def test_same_name_birth_date_and_sex_is_a_likely_duplicate() -> None:
    a = PersonFacts("Nguyễn Văn An", PartialDate(1985, 9, 4), "male")
    b = PersonFacts("NGUYEN VAN AN", date(1985, 9, 4), "male")
    result = looks_like_duplicate(a, b)
    assert result.likely
    assert result.reasons == ("same_name", "same_birth_date", "same_sex")
    assert result.score == pytest.approx(0.8)


def test_year_only_birth_date_matches_the_year() -> None:
    a = PersonFacts("Đặng Thị Đào", PartialDate(1962), "female")
    b = PersonFacts("Đặng Thị Đào", PartialDate(1962, 3, 1), "female")
    result = looks_like_duplicate(a, b)
    assert result.likely
    assert "same_birth_year" in result.reasons
    assert result.score < looks_like_duplicate(b, b).score


@pytest.mark.parametrize(
    ("born_a", "born_b"),
    [
        (PartialDate(1985, 9, 4), PartialDate(1990, 1, 2)),
        (PartialDate(1985, 9, 4), PartialDate(1986, 9, 4)),
        (PartialDate(1985, 9, 4), PartialDate(1985, 9, 5)),
        (PartialDate(1962), PartialDate(1965)),
        (PartialDate(1962), date(1965, 3, 1)),
    ],
)
def test_same_name_different_birth_date_is_not_a_duplicate(
    born_a: PartialDate, born_b: PartialDate | date
) -> None:
    a = PersonFacts("Nguyễn Văn An", born_a, "male")
    b = PersonFacts("Nguyễn Văn An", born_b, "male")
    result = looks_like_duplicate(a, b)
    assert not result.likely
    assert result.reasons == ("same_name", "different_birth_date", "same_sex")


def test_same_phone_and_similar_name() -> None:
    a = PersonFacts("Nguyễn Thị Hà", phone="+84 912 345 678")
    b = PersonFacts("Nguyễn Thị Thu Hà", phone="0912.345.678")
    result = looks_like_duplicate(a, b)
    assert result.likely
    assert set(result.reasons) == {"similar_name", "same_phone"}


def test_family_sharing_a_phone_is_not_a_duplicate() -> None:
    mother = PersonFacts("Trần Thị Lan", PartialDate(1970, 5, 1), "female", phone="0912345678")
    son = PersonFacts("Phạm Văn Minh", PartialDate(2015, 8, 9), "male", phone="0912345678")
    result = looks_like_duplicate(mother, son)
    assert not result.likely
    assert {"same_phone", "different_sex", "different_birth_date"} <= set(result.reasons)
    # A father and son with the same name and phone: the different birth date outweighs both.
    father = PersonFacts("Nguyễn Văn An", PartialDate(1960, 2, 3), "male", phone="0912345678")
    son = PersonFacts("Nguyễn Văn An", PartialDate(1990, 7, 8), "male", phone="0912 345 678")
    assert not looks_like_duplicate(father, son).likely
    assert looks_like_duplicate(father, PersonFacts("Nguyễn Văn An", phone="0912345678")).likely


def test_identifiers() -> None:
    a = PersonFacts("Lê Việt Hưng", PartialDate(1985, 9, 4), "male", cccd="001085009876")
    typo = PersonFacts("Lê Viet Hung", cccd="001085009876")
    assert looks_like_duplicate(a, typo).score == 1.0
    other = PersonFacts("Lê Việt Hưng", PartialDate(1985, 9, 4), "male", cccd="001085001111")
    different = looks_like_duplicate(a, other)
    assert not different.likely
    assert "different_cccd" in different.reasons
    pupil = PersonFacts("Lê Việt Hưng", bhyt_number="HS4010120878811")
    worker = PersonFacts("Lê Việt Hùng", bhyt_number="DN4 01 0120878811")
    assert looks_like_duplicate(pupil, worker).score >= 0.95


def test_unrelated_people() -> None:
    result = looks_like_duplicate(PersonFacts("Ngô Bảo Châu"), PersonFacts("Trần Thị Khuê"))
    assert (result.score, result.reasons, result.likely) == (0.0, (), False)


@pytest.mark.parametrize(
    ("text", "phone"),
    [
        ("+84 912 345 678", "0912345678"),
        ("0912-345-678", "0912345678"),
        ("84912345678", "0912345678"),
        ("024 3825 1234", "02438251234"),
        ("", None),
        (None, None),
    ],
)
def test_normalize_phone(text: str | None, phone: str | None) -> None:
    assert normalize_phone(text) == phone
