"""The demo hospital's price list, ward bed-day classes and the bed-day counting rule (pure data/rules).

Prices follow the structure of the national price frames (Circular 39/2018/TT-BYT as amended by
Circular 22/2023/TT-BYT: examination, bed-days by ward class, technical services) for a provincial
general hospital; the figures are illustrative for the demo, not a published tariff. ``hospital`` is
what the hospital charges, ``insurance`` the price the BHYT fund recognises; a service on demand
has a higher hospital price and the patient pays the difference (T_BNTT).

MA_NHOM (QĐ130 group): 1 lab, 2 imaging, 3 functional tests, 4 drug in the BHYT list, 6 drug paid
by ratio, 8 surgery, 10 supply in the list, 13 examination, 15 inpatient bed-day, 18 procedure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

CATEGORIES = ("exam", "lab", "imaging", "procedure", "bed", "supply", "drug")
DRUG_GROUPS = (4, 5, 6)  # XML2 (CHI_TIET_THUOC); every other group is XML3
SUPPLY_GROUPS = (10, 11)
EXAM_CODE = "KB-THUONG"  # charged when an outpatient visit opens
OLD_PRICES_END = date(2024, 6, 30)
NEW_PRICES_START = date(2024, 7, 1)


@dataclass(frozen=True)
class PriceItem:
    code: str
    name: str
    category: str
    unit: str
    hospital: int
    insurance: int
    covered: bool
    bhyt_code: str
    group: int
    payment_ratio: int = 100
    effective_from: date = NEW_PRICES_START
    effective_to: date | None = None


def _p(
    code: str,
    name: str,
    category: str,
    unit: str,
    hospital: int,
    insurance: int,
    bhyt: str,
    group: int,
    covered: bool = True,
    ratio: int = 100,
) -> PriceItem:
    return PriceItem(code, name, category, unit, hospital, insurance, covered, bhyt, group, ratio)


CURRENT = (
    # examination
    _p("KB-THUONG", "Khám bệnh", "exam", "Lần", 42_100, 42_100, "02.1896", 13),
    _p("KB-YEUCAU", "Khám bệnh theo yêu cầu (chuyên gia)", "exam", "Lần", 150_000, 42_100, "02.1896", 13),
    _p(
        "KB-HOICHAN",
        "Hội chẩn để xác định ca bệnh khó (chuyên gia/ca)",
        "exam",
        "Ca",
        200_000,
        200_000,
        "02.1897",
        13,
    ),
    # laboratory
    _p(
        "XN-CTM",
        "Tổng phân tích tế bào máu ngoại vi (bằng máy đếm laser)",
        "lab",
        "Lần",
        46_200,
        46_200,
        "22.0121.1370",
        1,
    ),
    _p("XN-GLU", "Định lượng Glucose [Máu]", "lab", "Lần", 21_500, 21_500, "23.0075.1494", 1),
    _p("XN-CRE", "Định lượng Creatinin [Máu]", "lab", "Lần", 21_500, 21_500, "23.0051.1494", 1),
    _p("XN-ALT", "Đo hoạt độ ALT (GPT) [Máu]", "lab", "Lần", 21_500, 21_500, "23.0020.1493", 1),
    _p("XN-AST", "Đo hoạt độ AST (GOT) [Máu]", "lab", "Lần", 21_500, 21_500, "23.0019.1493", 1),
    _p("XN-HBA1C", "Định lượng HbA1c [Máu]", "lab", "Lần", 101_000, 101_000, "23.0083.1523", 1),
    _p("XN-CRP", "Định lượng CRP hs [Máu]", "lab", "Lần", 53_800, 53_800, "23.0058.1506", 1),
    _p(
        "XN-NTIEU",
        "Tổng phân tích nước tiểu (bằng máy tự động)",
        "lab",
        "Lần",
        27_400,
        27_400,
        "23.0206.1596",
        1,
    ),
    _p("XN-DGD", "Điện giải đồ (Na, K, Cl) [Máu]", "lab", "Lần", 29_000, 29_000, "23.0058.1487", 1),
    # imaging and functional tests
    _p("CDHA-XQNGUC", "Chụp X-quang ngực thẳng", "imaging", "Lần", 65_400, 65_400, "18.0067.0028", 2),
    _p(
        "CDHA-SAOB",
        "Siêu âm ổ bụng (gan mật, tụy, lách, thận, bàng quang)",
        "imaging",
        "Lần",
        43_900,
        43_900,
        "18.0014.0001",
        2,
    ),
    _p(
        "CDHA-CTSN",
        "Chụp CT sọ não không tiêm thuốc cản quang",
        "imaging",
        "Lần",
        522_000,
        522_000,
        "18.0070.0001",
        2,
    ),
    _p("CDHA-MRISN", "Chụp cộng hưởng từ sọ não", "imaging", "Lần", 1_311_000, 1_311_000, "18.0188.0055", 2),
    _p("TDCN-ECG", "Điện tim thường", "procedure", "Lần", 32_800, 32_800, "02.0085.1778", 3),
    # procedures and surgery
    _p(
        "TT-NSDD",
        "Nội soi thực quản - dạ dày - tá tràng ống mềm không sinh thiết",
        "procedure",
        "Lần",
        249_000,
        249_000,
        "02.0304.0133",
        18,
    ),
    _p(
        "TT-KHAUVT",
        "Khâu vết thương phần mềm tổn thương nông chiều dài < 10 cm",
        "procedure",
        "Lần",
        178_000,
        178_000,
        "10.0800.0563",
        18,
    ),
    _p(
        "TT-THAYBANG",
        "Thay băng vết thương chiều dài ≤ 15 cm",
        "procedure",
        "Lần",
        57_600,
        57_600,
        "03.3911.0200",
        18,
    ),
    _p("TT-SONDETIEU", "Đặt ống thông tiểu", "procedure", "Lần", 90_100, 90_100, "03.3853.0214", 18),
    _p(
        "PT-NSRT",
        "Phẫu thuật nội soi cắt ruột thừa",
        "procedure",
        "Lần",
        2_622_000,
        2_622_000,
        "10.0453.0474",
        8,
    ),
    # bed-days by ward class
    _p("GB-HSTC", "Ngày giường bệnh Hồi sức tích cực", "bed", "Ngày", 738_500, 738_500, "K01.1916", 15),
    _p(
        "GB-HSCC",
        "Ngày giường bệnh Hồi sức cấp cứu, chống độc",
        "bed",
        "Ngày",
        447_800,
        447_800,
        "K02.1917",
        15,
    ),
    _p("GB-NOI1", "Ngày giường bệnh Nội khoa loại 1", "bed", "Ngày", 247_300, 247_300, "K03.1918", 15),
    _p("GB-NOI2", "Ngày giường bệnh Nội khoa loại 2", "bed", "Ngày", 220_300, 220_300, "K03.1919", 15),
    _p("GB-NOI3", "Ngày giường bệnh Nội khoa loại 3", "bed", "Ngày", 188_100, 188_100, "K03.1920", 15),
    _p(
        "GB-NGOAI2",
        "Ngày giường bệnh Ngoại khoa loại 2 (sau phẫu thuật loại 2)",
        "bed",
        "Ngày",
        282_200,
        282_200,
        "K04.1924",
        15,
    ),
    _p(
        "GB-YEUCAU",
        "Ngày giường bệnh theo yêu cầu (phòng 2 giường)",
        "bed",
        "Ngày",
        600_000,
        220_300,
        "K03.1919",
        15,
    ),
    # supplies
    _p("VT-BT5", "Bơm tiêm nhựa 5ml", "supply", "Cái", 1_500, 1_500, "N03.02.070", 10),
    _p("VT-KIMLUON", "Kim luồn tĩnh mạch 22G", "supply", "Cái", 12_000, 12_000, "N03.05.010", 10),
    _p("VT-DAYTRUYEN", "Dây truyền dịch", "supply", "Bộ", 7_500, 7_500, "N04.01.020", 10),
    _p("VT-GANGTAY", "Găng tay y tế vô khuẩn", "supply", "Đôi", 3_000, 3_000, "N02.03.010", 10),
    _p(
        "VT-BANGCUON",
        "Băng cuộn co giãn (ngoài danh mục BHYT)",
        "supply",
        "Cuộn",
        25_000,
        0,
        "N99.01.001",
        10,
        covered=False,
    ),
    # drugs
    _p("T-PARA500", "Paracetamol 500mg", "drug", "Viên", 400, 400, "40.10", 4),
    _p("T-AMOX500", "Amoxicilin 500mg", "drug", "Viên", 1_250, 1_250, "40.17", 4),
    _p("T-NACL09", "Natri clorid 0,9% 500ml", "drug", "Chai", 10_500, 10_500, "40.997", 4),
    _p("T-OME20", "Omeprazol 20mg", "drug", "Viên", 1_900, 1_900, "40.677", 4),
    _p("T-CEFTRI1G", "Ceftriaxon 1g", "drug", "Lọ", 21_000, 21_000, "40.216", 4),
    _p("T-ALBUMIN", "Albumin 20% 50ml", "drug", "Chai", 680_000, 680_000, "40.537", 6, ratio=70),
    _p(
        "T-VITC500",
        "Vitamin C 500mg (ngoài danh mục BHYT)",
        "drug",
        "Viên",
        500,
        0,
        "40.1063",
        4,
        covered=False,
    ),
)

# Prices in force before 1 July 2024 (kept for services rendered before that day).
PREVIOUS = (
    PriceItem(
        "KB-THUONG",
        "Khám bệnh",
        "exam",
        "Lần",
        38_700,
        38_700,
        True,
        "02.1896",
        13,
        effective_from=date(2023, 1, 1),
        effective_to=OLD_PRICES_END,
    ),
    PriceItem(
        "GB-NOI2",
        "Ngày giường bệnh Nội khoa loại 2",
        "bed",
        "Ngày",
        199_100,
        199_100,
        True,
        "K03.1919",
        15,
        effective_from=date(2023, 1, 1),
        effective_to=OLD_PRICES_END,
    ),
    PriceItem(
        "XN-CTM",
        "Tổng phân tích tế bào máu ngoại vi (bằng máy đếm laser)",
        "lab",
        "Lần",
        40_400,
        40_400,
        True,
        "22.0121.1370",
        1,
        effective_from=date(2023, 1, 1),
        effective_to=OLD_PRICES_END,
    ),
)

PRICE_LIST = PREVIOUS + CURRENT

# Ward (admissions ward code) -> bed-day price code.
WARD_BED_CLASS = {
    "HSTC": "GB-HSTC",
    "CC": "GB-HSCC",
    "HSM": "GB-HSCC",
    "TNH": "GB-NOI1",
    "NHI": "GB-NOI1",
    "SSI": "GB-NOI1",
    "TIM": "GB-NOI1",
    "TKI": "GB-NOI1",
    "NOI": "GB-NOI2",
    "NTI": "GB-NOI2",
    "UBU": "GB-NOI2",
    "YHC": "GB-NOI3",
    "PHC": "GB-NOI3",
    "DLI": "GB-NOI3",
    "TMH": "GB-NOI3",
    "RHM": "GB-NOI3",
    "MAT": "GB-NOI3",
    "NGO": "GB-NGOAI2",
    "CTC": "GB-NGOAI2",
    "NGK": "GB-NGOAI2",
    "SAN": "GB-NGOAI2",
}
DEFAULT_BED_CLASS = "GB-NOI2"


def bed_price_code(ward_code: str) -> str:
    return WARD_BED_CLASS.get(ward_code, DEFAULT_BED_CLASS)


def bed_days(start: date, end: date, *, last_segment: bool) -> int:
    """Bed-days of one ward segment, counted on Vietnam calendar days.

    A stay counts (discharge day − admission day + 1) days in total; the day of a transfer is charged
    to the ward the patient moved to, so every segment but the last counts (end − start) days and the
    last one (end − start + 1). A segment started and ended the same day before a transfer is free.
    """
    if end < start:
        raise ValueError(f"segment ends ({end}) before it starts ({start})")
    return (end - start).days + (1 if last_segment else 0)


# A stay shorter than this, admission to discharge, is charged no bed-day (see billing-insurance-rules.md §4).
MIN_CHARGED_STAY = timedelta(hours=4)


@dataclass(frozen=True)
class BedLine:
    price_code: str
    days: int | Decimal  # 0.5 for each half of a transfer day
    first_day: bool  # the line is (half of) the segment's first day, a transfer day
    key: str = "bed"  # source-key suffix: bed, bed-first (the dearest class), bed-first-low (the cheapest)


HALF = Decimal("0.5")


def segment_lines(
    start: date,
    end: date,
    ward_class: str,
    day_class: str | None,
    *,
    last_segment: bool,
    day_low_class: str | None = None,
) -> list[BedLine]:
    """Bed-day lines of one ward segment.

    Days are Vietnam calendar days; a stay counts (discharge day − admission day + 1) days. A day on
    which the patient moved between departments is billed 0.5 at the dearest and 0.5 at the cheapest
    bed class of the wards the patient lay in that day (``day_class`` and ``day_low_class``, set at the
    transfer; the segment that starts with the transfer carries that day); the following days at the
    ward's own class, up to the day before the next transfer, or up to the discharge day for the last
    segment. A segment started and ended the same day before a transfer posts nothing (its day goes on
    with the next one). ``day_class`` alone (a segment recorded before the half-day rule) charges the
    whole first day at that class.
    """
    if end < start:
        raise ValueError(f"segment ends ({end}) before it starts ({start})")
    dear = day_class or ward_class
    low = day_low_class or dear
    if dear == low:
        first = [BedLine(dear, 1, dear != ward_class, "bed-first" if dear != ward_class else "bed")]
    else:
        first = [BedLine(dear, HALF, True, "bed-first"), BedLine(low, HALF, True, "bed-first-low")]
    if end == start:
        return first if last_segment else []
    rest = (end - start).days - 1 + (1 if last_segment else 0)
    if len(first) == 1 and not first[0].first_day:
        return [BedLine(ward_class, rest + 1, False)]
    return first + ([BedLine(ward_class, rest, False)] if rest else [])


def dated_lines(
    lines: list[BedLine], start: date, end: date, *, last_segment: bool, changes: Iterable[date] = ()
) -> list[tuple[BedLine, date | None]]:
    """The lines of a ward segment (:func:`segment_lines`) with the day each is paid on, cut at each day
    a card issued during the stay starts (``changes``): every part is paid under its own card.

    Without a change inside the segment every line keeps ``None`` (dated when the segment ends, as
    before). With one, the first-day lines are dated on the segment's first day and the ward-class line
    is cut: ``[a, c-1]`` keyed ``bed-<yyyymmdd of c-1>`` and dated its last day, ..., the last part keeps
    the key ``bed`` and ``None``."""
    has_first = any(line.first_day or line.key != "bed" for line in lines)
    ward = next((line for line in lines if line.key == "bed" and not line.first_day), None)
    a = start + timedelta(days=1) if has_first else start
    b = end if last_segment else end - timedelta(days=1)
    cuts = sorted({c for c in changes if a < c <= b}) if ward is not None else []
    if not cuts and not any(start < c <= end for c in changes):
        return [(line, None) for line in lines]
    out: list[tuple[BedLine, date | None]] = [(line, start) for line in lines if line is not ward]
    if ward is None:
        return out
    for cut in cuts:
        last = cut - timedelta(days=1)
        out.append((BedLine(ward.price_code, (last - a).days + 1, False, f"bed-{last:%Y%m%d}"), last))
        a = cut
    out.append((BedLine(ward.price_code, (b - a).days + 1, False, ward.key), None))
    return out
