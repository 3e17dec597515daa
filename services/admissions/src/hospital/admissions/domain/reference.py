"""Reference data: Vietnamese provinces and the demo layout of a 900-bed provincial general hospital.

Province codes are the 2-digit administrative codes (Decision 124/2004/QĐ-TTg and its updates), which
are also the province part of BHYT card numbers (``HS4 01 0120878811`` → 01, Hà Nội) and of facility
codes ("01 - 043"). They are the 63 provinces in force until 30 June 2025: cards and records issued
before then carry these codes. Social-insurance offices of the armed forces may use codes outside
this list [unconfirmed], so card parsing does not reject an unknown province code.

From 1 July 2025 (Resolution 202/2025/QH15) 63 provinces became 34; ``provinces_since_2025`` gives
each new province with the old provinces it absorbed. The administrative codes of the 34 new
provinces are not included: no primary text backing them was at hand when this was written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Bed",
    "ClinicRoom",
    "Department",
    "NewProvince",
    "Province",
    "Ward",
    "WardRoom",
    "beds",
    "clinic_rooms",
    "departments",
    "new_province_of",
    "province",
    "provinces",
    "provinces_since_2025",
    "ward_rooms",
    "wards",
]


@dataclass(frozen=True)
class Province:
    """A province or centrally-run city as it stood before the 1 July 2025 merger."""

    code: str
    name: str
    is_city: bool = False

    @property
    def full_name(self) -> str:
        return f"{'Thành phố' if self.is_city else 'Tỉnh'} {self.name}"


@dataclass(frozen=True)
class NewProvince:
    """A province from 1 July 2025, with the codes of the pre-merger provinces it is made of."""

    name: str
    merged_from: tuple[str, ...]
    is_city: bool = False

    @property
    def full_name(self) -> str:
        return f"{'Thành phố' if self.is_city else 'Tỉnh'} {self.name}"


_PROVINCES = (
    Province("01", "Hà Nội", is_city=True),
    Province("02", "Hà Giang"),
    Province("04", "Cao Bằng"),
    Province("06", "Bắc Kạn"),
    Province("08", "Tuyên Quang"),
    Province("10", "Lào Cai"),
    Province("11", "Điện Biên"),
    Province("12", "Lai Châu"),
    Province("14", "Sơn La"),
    Province("15", "Yên Bái"),
    Province("17", "Hòa Bình"),
    Province("19", "Thái Nguyên"),
    Province("20", "Lạng Sơn"),
    Province("22", "Quảng Ninh"),
    Province("24", "Bắc Giang"),
    Province("25", "Phú Thọ"),
    Province("26", "Vĩnh Phúc"),
    Province("27", "Bắc Ninh"),
    Province("30", "Hải Dương"),
    Province("31", "Hải Phòng", is_city=True),
    Province("33", "Hưng Yên"),
    Province("34", "Thái Bình"),
    Province("35", "Hà Nam"),
    Province("36", "Nam Định"),
    Province("37", "Ninh Bình"),
    Province("38", "Thanh Hóa"),
    Province("40", "Nghệ An"),
    Province("42", "Hà Tĩnh"),
    Province("44", "Quảng Bình"),
    Province("45", "Quảng Trị"),
    Province("46", "Huế", is_city=True),  # the province of Thừa Thiên Huế until 31 December 2024
    Province("48", "Đà Nẵng", is_city=True),
    Province("49", "Quảng Nam"),
    Province("51", "Quảng Ngãi"),
    Province("52", "Bình Định"),
    Province("54", "Phú Yên"),
    Province("56", "Khánh Hòa"),
    Province("58", "Ninh Thuận"),
    Province("60", "Bình Thuận"),
    Province("62", "Kon Tum"),
    Province("64", "Gia Lai"),
    Province("66", "Đắk Lắk"),
    Province("67", "Đắk Nông"),
    Province("68", "Lâm Đồng"),
    Province("70", "Bình Phước"),
    Province("72", "Tây Ninh"),
    Province("74", "Bình Dương"),
    Province("75", "Đồng Nai"),
    Province("77", "Bà Rịa - Vũng Tàu"),
    Province("79", "Hồ Chí Minh", is_city=True),
    Province("80", "Long An"),
    Province("82", "Tiền Giang"),
    Province("83", "Bến Tre"),
    Province("84", "Trà Vinh"),
    Province("86", "Vĩnh Long"),
    Province("87", "Đồng Tháp"),
    Province("89", "An Giang"),
    Province("91", "Kiên Giang"),
    Province("92", "Cần Thơ", is_city=True),
    Province("93", "Hậu Giang"),
    Province("94", "Sóc Trăng"),
    Province("95", "Bạc Liêu"),
    Province("96", "Cà Mau"),
)

_PROVINCES_SINCE_2025 = (
    NewProvince("Hà Nội", ("01",), is_city=True),
    NewProvince("Cao Bằng", ("04",)),
    NewProvince("Tuyên Quang", ("08", "02")),
    NewProvince("Điện Biên", ("11",)),
    NewProvince("Lai Châu", ("12",)),
    NewProvince("Sơn La", ("14",)),
    NewProvince("Lào Cai", ("10", "15")),
    NewProvince("Thái Nguyên", ("19", "06")),
    NewProvince("Lạng Sơn", ("20",)),
    NewProvince("Quảng Ninh", ("22",)),
    NewProvince("Phú Thọ", ("25", "26", "17")),
    NewProvince("Bắc Ninh", ("27", "24")),
    NewProvince("Hải Phòng", ("31", "30"), is_city=True),
    NewProvince("Hưng Yên", ("33", "34")),
    NewProvince("Ninh Bình", ("37", "35", "36")),
    NewProvince("Thanh Hóa", ("38",)),
    NewProvince("Nghệ An", ("40",)),
    NewProvince("Hà Tĩnh", ("42",)),
    NewProvince("Quảng Trị", ("45", "44")),
    NewProvince("Huế", ("46",), is_city=True),
    NewProvince("Đà Nẵng", ("48", "49"), is_city=True),
    NewProvince("Quảng Ngãi", ("51", "62")),
    NewProvince("Gia Lai", ("64", "52")),
    NewProvince("Khánh Hòa", ("56", "58")),
    NewProvince("Đắk Lắk", ("66", "54")),
    NewProvince("Lâm Đồng", ("68", "67", "60")),
    NewProvince("Đồng Nai", ("75", "70")),
    NewProvince("Tây Ninh", ("72", "80")),
    NewProvince("Hồ Chí Minh", ("79", "74", "77"), is_city=True),
    NewProvince("Đồng Tháp", ("87", "82")),
    NewProvince("Vĩnh Long", ("86", "83", "84")),
    NewProvince("An Giang", ("89", "91")),
    NewProvince("Cần Thơ", ("92", "94", "93"), is_city=True),
    NewProvince("Cà Mau", ("96", "95")),
)

_PROVINCE_BY_CODE = {p.code: p for p in _PROVINCES}
_NEW_PROVINCE_BY_OLD_CODE = {code: p for p in _PROVINCES_SINCE_2025 for code in p.merged_from}


def provinces() -> tuple[Province, ...]:
    """The 63 provinces and cities before 1 July 2025, by code."""
    return _PROVINCES


def province(code: str) -> Province | None:
    """The pre-2025 province with this 2-digit code, or None."""
    return _PROVINCE_BY_CODE.get(code)


def provinces_since_2025() -> tuple[NewProvince, ...]:
    """The 34 provinces and cities from 1 July 2025."""
    return _PROVINCES_SINCE_2025


def new_province_of(code: str) -> NewProvince | None:
    """The post-July-2025 province that a pre-2025 province code now belongs to, or None."""
    return _NEW_PROVINCE_BY_OLD_CODE.get(code)


# --- the demo hospital ----------------------------------------------------------------------------

DepartmentKind = Literal["clinical", "paraclinical", "support"]


@dataclass(frozen=True)
class Department:
    code: str
    name: str
    kind: DepartmentKind


@dataclass(frozen=True)
class ClinicRoom:
    """An outpatient examination room.

    ``department_code`` runs the room (mostly the outpatient department, Khoa Khám bệnh);
    ``specialty_code`` is the clinical department a patient seen there is admitted to.
    """

    code: str
    name: str
    department_code: str
    specialty_code: str


@dataclass(frozen=True)
class Ward:
    """An inpatient treatment area of a department (a department may have several)."""

    code: str
    name: str
    department_code: str


@dataclass(frozen=True)
class WardRoom:
    code: str  # "NOI-101": ward code and the room number on the door
    ward_code: str
    name: str


@dataclass(frozen=True)
class Bed:
    code: str  # "NOI-101-01": room code and bed number
    ward_code: str
    room_code: str


_DEPARTMENTS = (
    Department("KKB", "Khoa Khám bệnh", "clinical"),
    Department("CC", "Khoa Cấp cứu", "clinical"),
    Department("HSTC", "Khoa Hồi sức tích cực - Chống độc", "clinical"),
    Department("NTH", "Khoa Nội tổng hợp", "clinical"),
    Department("NTM", "Khoa Nội tim mạch", "clinical"),
    Department("NTK", "Khoa Nội thần kinh", "clinical"),
    Department("NTT", "Khoa Nội tiết", "clinical"),
    Department("TN", "Khoa Truyền nhiễm", "clinical"),
    Department("NGTH", "Khoa Ngoại tổng hợp", "clinical"),
    Department("CTCH", "Khoa Chấn thương chỉnh hình", "clinical"),
    Department("NGTK", "Khoa Ngoại thần kinh", "clinical"),
    Department("PTGM", "Khoa Phẫu thuật - Gây mê hồi sức", "clinical"),
    Department("SAN", "Khoa Sản", "clinical"),
    Department("NHI", "Khoa Nhi", "clinical"),
    Department("UB", "Khoa Ung bướu", "clinical"),
    Department("YHCT", "Khoa Y học cổ truyền", "clinical"),
    Department("PHCN", "Khoa Phục hồi chức năng", "clinical"),
    Department("TMH", "Khoa Tai Mũi Họng", "clinical"),
    Department("RHM", "Khoa Răng Hàm Mặt", "clinical"),
    Department("MAT", "Khoa Mắt", "clinical"),
    Department("DL", "Khoa Da liễu", "clinical"),
    Department("XN", "Khoa Xét nghiệm", "paraclinical"),
    Department("CDHA", "Khoa Chẩn đoán hình ảnh", "paraclinical"),
    Department("TDCN", "Khoa Thăm dò chức năng", "paraclinical"),
    Department("GPB", "Khoa Giải phẫu bệnh", "paraclinical"),
    Department("DUOC", "Khoa Dược", "support"),
    Department("KSNK", "Khoa Kiểm soát nhiễm khuẩn", "support"),
    Department("DD", "Khoa Dinh dưỡng", "support"),
)

_CLINIC_ROOMS = (
    ClinicRoom("P101", "Phòng khám Nội 1", "KKB", "NTH"),
    ClinicRoom("P102", "Phòng khám Nội 2", "KKB", "NTH"),
    ClinicRoom("P103", "Phòng khám Nội 3", "KKB", "NTH"),
    ClinicRoom("P104", "Phòng khám Tim mạch", "KKB", "NTM"),
    ClinicRoom("P105", "Phòng khám Thần kinh", "KKB", "NTK"),
    ClinicRoom("P106", "Phòng khám Nội tiết", "KKB", "NTT"),
    ClinicRoom("P107", "Phòng khám Truyền nhiễm", "KKB", "TN"),
    ClinicRoom("P108", "Phòng khám Ngoại 1", "KKB", "NGTH"),
    ClinicRoom("P109", "Phòng khám Ngoại 2", "KKB", "NGTH"),
    ClinicRoom("P110", "Phòng khám Chấn thương chỉnh hình", "KKB", "CTCH"),
    ClinicRoom("P111", "Phòng khám Ngoại thần kinh", "KKB", "NGTK"),
    ClinicRoom("P112", "Phòng khám Sức khỏe", "KKB", "KKB"),
    ClinicRoom("P201", "Phòng khám Sản phụ khoa", "KKB", "SAN"),
    ClinicRoom("P202", "Phòng khám Nhi 1", "KKB", "NHI"),
    ClinicRoom("P203", "Phòng khám Nhi 2", "KKB", "NHI"),
    ClinicRoom("P204", "Phòng khám Ung bướu", "KKB", "UB"),
    ClinicRoom("P205", "Phòng khám Da liễu", "KKB", "DL"),
    ClinicRoom("P206", "Phòng khám Tai Mũi Họng", "TMH", "TMH"),
    ClinicRoom("P207", "Phòng khám Răng Hàm Mặt", "RHM", "RHM"),
    ClinicRoom("P208", "Phòng khám Mắt", "MAT", "MAT"),
    ClinicRoom("P209", "Phòng khám Y học cổ truyền", "YHCT", "YHCT"),
    ClinicRoom("P210", "Phòng khám Phục hồi chức năng", "PHCN", "PHCN"),
)

# (ward code, name, department, first room number, rooms, beds per room)
_WARD_LAYOUT = (
    ("NOI", "Khu điều trị Nội tổng hợp", "NTH", 101, 16, 6),
    ("CC", "Khu lưu bệnh Cấp cứu", "CC", 120, 4, 8),
    ("TNH", "Khu điều trị Truyền nhiễm", "TN", 130, 8, 5),
    ("HSTC", "Khu Hồi sức tích cực", "HSTC", 201, 3, 10),
    ("TIM", "Khu điều trị Nội tim mạch", "NTM", 210, 10, 6),
    ("TKI", "Khu điều trị Nội thần kinh", "NTK", 230, 8, 6),
    ("NTI", "Khu điều trị Nội tiết", "NTT", 301, 6, 6),
    ("NGO", "Khu điều trị Ngoại tổng hợp", "NGTH", 310, 14, 6),
    ("CTC", "Khu điều trị Chấn thương chỉnh hình", "CTCH", 401, 10, 6),
    ("NGK", "Khu điều trị Ngoại thần kinh", "NGTK", 420, 6, 6),
    ("HSM", "Khu hồi sức sau mổ", "PTGM", 501, 2, 9),
    ("SAN", "Khu điều trị Sản", "SAN", 510, 12, 6),
    ("NHI", "Khu điều trị Nhi", "NHI", 601, 10, 6),
    ("SSI", "Đơn nguyên Sơ sinh", "NHI", 620, 3, 8),
    ("UBU", "Khu điều trị Ung bướu", "UB", 701, 8, 6),
    ("YHC", "Khu điều trị Y học cổ truyền", "YHCT", 710, 7, 6),
    ("PHC", "Khu điều trị Phục hồi chức năng", "PHCN", 720, 5, 6),
    ("TMH", "Khu điều trị Tai Mũi Họng", "TMH", 801, 4, 6),
    ("RHM", "Khu điều trị Răng Hàm Mặt", "RHM", 810, 3, 6),
    ("MAT", "Khu điều trị Mắt", "MAT", 820, 4, 6),
    ("DLI", "Khu điều trị Da liễu", "DL", 830, 3, 6),
)

_WARDS = tuple(Ward(code, name, department) for code, name, department, *_ in _WARD_LAYOUT)
_WARD_ROOMS = tuple(
    WardRoom(f"{ward}-{number}", ward, f"Buồng {number}")
    for ward, _, _, first, count, _ in _WARD_LAYOUT
    for number in range(first, first + count)
)
_BEDS_PER_ROOM = {ward: per_room for ward, *_, per_room in _WARD_LAYOUT}
_BEDS = tuple(
    Bed(f"{room.code}-{bed:02d}", room.ward_code, room.code)
    for room in _WARD_ROOMS
    for bed in range(1, _BEDS_PER_ROOM[room.ward_code] + 1)
)


def departments() -> tuple[Department, ...]:
    return _DEPARTMENTS


def clinic_rooms() -> tuple[ClinicRoom, ...]:
    return _CLINIC_ROOMS


def wards() -> tuple[Ward, ...]:
    return _WARDS


def ward_rooms() -> tuple[WardRoom, ...]:
    return _WARD_ROOMS


def beds() -> tuple[Bed, ...]:
    """All 900 beds, room by room."""
    return _BEDS
