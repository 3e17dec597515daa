"""The QĐ 130/QĐ-BYT tables as the decision defines them, and the XSDs derived from them.

``qd130_tables.csv`` transcribes the appendix of QĐ 4750/QĐ-BYT (which restates every table of QĐ 130
with its corrections): for each table its elements in order, their type (string or number, after the
corrections that turned codes into strings) and maximum size. The XSDs in ``xsd/`` are generated from
it by :func:`render_xsd` (``python -m hospital.billing.domain.xml130.tables`` rewrites them; a test
checks that the shipped files are what the table gives), so they follow the decision, not our output.

On top of the table, the schemas carry the formats the decision's descriptions state: times
``yyyyMMddHHmm``, dates ``yyyyMMdd``, several cards/facilities/dates joined by ``;``, the codes of
GIOI_TINH, KET_QUA_DTRI, MA_LOAI_RV, MA_LOAI_KCB, and decimals (3 places for quantities and unit prices,
2 for amounts). Every element is present in every row, empty when the visit has no value for it.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path


@dataclass(frozen=True)
class Element:
    name: str
    numeric: bool  # "Số" in the decision (after QĐ 4750's type changes)
    size: int | None  # maximum length (digits for a number); None = unlimited ("n")
    required: bool  # must not be empty
    decision_no: str  # the row number in the decision's table ("" for rows QĐ 4750 inserted)

    @property
    def fraction_digits(self) -> int:
        return FRACTION_DIGITS.get(self.name, 0) if self.numeric else 0


@dataclass(frozen=True)
class Table:
    loai: str  # LOAIHOSO: XML0 (check-in) .. XML15
    title: str
    root: str
    list_tag: str | None  # None: the root holds one record's elements
    row_tag: str | None
    elements: tuple[Element, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.elements)


# Containers of each table file (the decision names the tables; these tags are the ones BHXH's receiving
# portal and the vendors' exporters use).
CONTAINERS: dict[str, tuple[str, str, str | None, str | None]] = {
    "XML0": (
        "Chỉ tiêu dữ liệu về trạng thái KBCB (check-in)",
        "CHI_TIEU_TRANG_THAI_KCB",
        "DSACH_TRANG_THAI_KCB",
        "TRANG_THAI_KCB",
    ),
    "XML1": ("Chỉ tiêu tổng hợp KBCB", "TONG_HOP", None, None),
    "XML2": ("Chỉ tiêu chi tiết thuốc", "CHITIEU_CHITIET_THUOC", "DSACH_CHI_TIET_THUOC", "CHI_TIET_THUOC"),
    "XML3": (
        "Chỉ tiêu chi tiết DVKT và VTYT",
        "CHITIEU_CHITIET_DVKT_VTYT",
        "DSACH_CHI_TIET_DVKT",
        "CHI_TIET_DVKT",
    ),
    "XML4": (
        "Chỉ tiêu chi tiết dịch vụ cận lâm sàng",
        "CHITIEU_CHITIET_DICHVUCANLAMSANG",
        "DSACH_CHI_TIET_CLS",
        "CHI_TIET_CLS",
    ),
    "XML5": (
        "Chỉ tiêu chi tiết diễn biến lâm sàng",
        "CHITIEU_CHITIET_DIENBIENLAMSANG",
        "DSACH_CHI_TIET_DIEN_BIEN_BENH",
        "CHI_TIET_DIEN_BIEN_BENH",
    ),
    "XML6": (
        "Chỉ tiêu hồ sơ bệnh án chăm sóc và điều trị HIV/AIDS",
        "CHI_TIEU_HO_SO_BENH_AN_CHAM_SOC_VA_DIEU_TRI_HIV_AIDS",
        "DSACH_HO_SO_BENH_AN_CHAM_SOC_VA_DIEU_TRI_HIV_AIDS",
        "HO_SO_BENH_AN_CHAM_SOC_VA_DIEU_TRI_HIV_AIDS",
    ),
    "XML7": ("Chỉ tiêu dữ liệu giấy ra viện", "CHI_TIEU_DU_LIEU_GIAY_RA_VIEN", None, None),
    "XML8": ("Chỉ tiêu dữ liệu tóm tắt hồ sơ bệnh án", "CHI_TIEU_DU_LIEU_TOM_TAT_HO_SO_BENH_AN", None, None),
    "XML9": (
        "Chỉ tiêu dữ liệu giấy chứng sinh",
        "CHI_TIEU_DU_LIEU_GIAY_CHUNG_SINH",
        "DSACH_GIAYCHUNGSINH",
        "DU_LIEU_GIAY_CHUNG_SINH",
    ),
    "XML10": (
        "Chỉ tiêu dữ liệu giấy chứng nhận nghỉ dưỡng thai",
        "CHI_TIEU_DU_LIEU_GIAY_NGHI_DUONG_THAI",
        None,
        None,
    ),
    "XML11": (
        "Chỉ tiêu dữ liệu giấy chứng nhận nghỉ việc hưởng BHXH",
        "CHI_TIEU_DU_LIEU_GIAY_CHUNG_NHAN_NGHI_VIEC_HUONG_BAO_HIEM_XA_HOI",
        None,
        None,
    ),
    "XML12": ("Chỉ tiêu dữ liệu giám định y khoa", "CHI_TIEU_DU_LIEU_GIAM_DINH_Y_KHOA", None, None),
    "XML13": ("Chỉ tiêu dữ liệu giấy chuyển tuyến KBCB BHYT", "CHI_TIEU_GIAYCHUYENTUYEN", None, None),
    "XML14": ("Chỉ tiêu dữ liệu giấy hẹn khám lại", "CHI_TIEU_GIAYHEN_KHAMLAI", None, None),
    "XML15": (
        "Chỉ tiêu thông tin quản lý điều trị bệnh lao",
        "CHI_TIEU_DIEUTRI_BENHLAO",
        "DSACH_CHITIET_DIEUTRI_BENHLAO",
        "CHITIET_DIEUTRI_BENHLAO",
    ),
}

#: Decimal places the decision gives: SO_LUONG and unit prices "làm tròn đến 3 chữ số thập phân", amounts
#: "làm tròn số đến 2 chữ số thập phân"; MUC_HUONG may be a product of two percentages (47.5).
FRACTION_DIGITS = {
    "SO_LUONG": 3,
    "DON_GIA": 3,
    "DON_GIA_BV": 3,
    "DON_GIA_BH": 3,
    "MUC_HUONG": 2,
    **dict.fromkeys(
        (
            "THANH_TIEN_BV",
            "THANH_TIEN_BH",
            "T_TRANTT",
            "T_NGUONKHAC_NSNN",
            "T_NGUONKHAC_VTNN",
            "T_NGUONKHAC_VTTN",
            "T_NGUONKHAC_CL",
            "T_NGUONKHAC",
            "T_BNTT",
            "T_BNCCT",
            "T_BHTT",
            "T_THUOC",
            "T_VTYT",
            "T_TONGCHI_BV",
            "T_TONGCHI_BH",
            "T_BHTT_GDV",
        ),
        2,
    ),
}

#: MUC_HUONG is at most 100 with up to 2 decimals (its size, 3, counts the whole part).
INTEGER_DIGITS = {"MUC_HUONG": 3}

_DATE8 = "[0-9]{4}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])"
_TIME4 = "([01][0-9]|2[0-3])[0-5][0-9]"
_DATETIME12 = _DATE8 + _TIME4
_CARD = "[A-Z]{2}[1-5][0-9]{2}[0-9A-Z]{10}"

#: Formats stated in the decision's descriptions, by element name (all tables).
PATTERNS = {
    **dict.fromkeys(
        (
            "NGAY_VAO",
            "NGAY_RA",
            "NGAY_VAO_NOI_TRU",
            "NGAY_TTOAN",
            "NGAY_YL",
            "NGAY_TH_YL",
            "NGAY_KQ",
            "THOI_DIEM_DBLS",
            "NGAY_HEN_KL",
            "THOIGIAN_DINHCHI",
        ),
        _DATETIME12,
    ),
    # a year-only birth date is yyyy00000000, an unknown day yyyyMM000000
    "NGAY_SINH": "[0-9]{4}(00|0[1-9]|1[0-2])(00|0[1-9]|[12][0-9]|3[01])" + _TIME4,
    **dict.fromkeys(
        ("NGAY_CT", "TU_NGAY", "DEN_NGAY", "NGOAITRU_TUNGAY", "NGOAITRU_DENNGAY", "NAM_NAM_LIEN_TUC"), _DATE8
    ),
    "NGAY_MIEN_CCT": _DATE8 + f"({_TIME4})?",
    "GT_THE_TU": f"{_DATE8}(;{_DATE8})*",
    "GT_THE_DEN": f"{_DATE8}(;{_DATE8})*",
    "NGAY_TAI_KHAM": f"{_DATE8}(;{_DATE8})*",
    "MA_THE_BHYT": f"{_CARD}(;{_CARD})*",
    "MA_DKBD": "[0-9]{5}(;[0-9]{5})*",
    "MA_CSKCB": "[0-9]{5}",
    "GIOI_TINH": "[1-3]",
    "KET_QUA_DTRI": "[1-8]",
    "MA_LOAI_RV": "[1-5]",
    "MA_LOAI_KCB": "0[1-9]|10",
    "MA_BENH_CHINH": "[A-Z][0-9]{2}(\\.?[0-9A-Z]{1,2})?",
    # 4 characters: H (planned bed), T (extra bed), C (bed of choice), K (stretcher, folding bed...) + the
    # bed's number in its department; the beds of a stay ;-joined
    "MA_GIUONG": "[HTCK][0-9]{3}(;[HTCK][0-9]{3})*",
    # national code lists (domain.xml130.codelists checks the values; the schema their form):
    # MA_DOITUONG_KCB 1.1 .. 10 (QĐ 3276/QĐ-BYT), departments K01.. (QĐ 5937/QĐ-BYT Phụ lục 5), ethnic
    # group 2 digits, province 3 digits (Thông tư 07/2016/TT-BCA), district 3 and ward 5 digits
    # (QĐ 124/2004/QĐ-TTg), nationality 3 digits, occupation 5 digits (QĐ 34/2020/QĐ-TTg)
    "MA_DOITUONG_KCB": "[1-9][0-9]?(\\.[0-9]{1,2})?",
    "MA_KHOA": "K[0-9]{2}(;K[0-9]{2})*",
    "MA_KHOA_RV": "K[0-9]{2}(;K[0-9]{2})*",
    "MA_DANTOC": "[0-9]{2}",
    "MATINH_CU_TRU": "[0-9]{3}",
    "MAHUYEN_CU_TRU": "[0-9]{3}",
    "MAXA_CU_TRU": "[0-9]{5}",
    "MA_QUOCTICH": "[0-9]{3}",
    "MA_NGHE_NGHIEP": "[0-9]{5}",
    "NAM_QT": "[0-9]{4}",
    "THANG_QT": "[1-9]|1[0-2]",
    # percentages: at most 100 (MUC_HUONG may carry 2 decimals: 95 % x 50 % = 47.5)
    "MUC_HUONG": "100(\\.0{1,2})?|[0-9]{1,2}(\\.[0-9]{1,2})?",
    "TYLE_TT_BH": "100|[0-9]{1,2}",
    "TYLE_TT_DV": "100|[0-9]{1,2}",
}

#: The decision's keys: MA_LK links the tables of one visit, STT numbers the rows.
KEYS = frozenset({"MA_LK", "STT"})

_HERE = "hospital.billing.domain.xml130"


def _size(text: str) -> int | None:
    return None if text.strip() == "n" else int(text)


@functools.cache
def tables() -> dict[str, Table]:
    """Every table of the decision, keyed by LOAIHOSO (XML0 = check-in)."""
    text = resources.files(_HERE).joinpath("qd130_tables.csv").read_text(encoding="utf-8")
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    elements: dict[str, list[Element]] = {}
    for row in rows:
        elements.setdefault(row["table"], []).append(
            Element(
                row["element"],
                row["type"] == "N",
                _size(row["size"]),
                row["required"] == "Y",
                row["decision_no"],
            )
        )
    return {loai: Table(loai, *CONTAINERS[loai], tuple(els)) for loai, els in elements.items()}


def table(loai: str) -> Table:
    return tables()[loai]


# ------------------------------------------------------------------------------------------ XSD
def _value_pattern(element: Element) -> str | None:
    if element.name in PATTERNS:
        return PATTERNS[element.name]
    if element.numeric:
        digits = element.size or 15
        frac = element.fraction_digits
        whole = INTEGER_DIGITS.get(element.name, digits - frac)
        return f"[0-9]{{1,{digits}}}" if frac == 0 else f"[0-9]{{1,{whole}}}(\\.[0-9]{{1,{frac}}})?"
    return None


def _simple_type(element: Element, strict: bool) -> list[str]:
    pattern = _value_pattern(element)
    required = (element.required and strict) or element.name in KEYS
    facets = []
    if element.size is not None and not element.numeric:
        facets.append(f'<xs:maxLength value="{element.size}"/>')
    if pattern is not None:
        full = pattern if required else f"({pattern})?"
        facets.append(f'<xs:pattern value="{full}"/>')
    elif required:
        facets.append('<xs:minLength value="1"/>')
    if not facets:
        return [f'<xs:element name="{element.name}" type="xs:string"/>']
    inner = "".join(f"\n{' ' * 14}{f}" for f in facets)
    return [
        f'<xs:element name="{element.name}">',
        "  <xs:simpleType>",
        f'    <xs:restriction base="xs:string">{inner}',
        "    </xs:restriction>",
        "  </xs:simpleType>",
        "</xs:element>",
    ]


def render_xsd(t: Table, *, strict: bool = True) -> str:
    """The XSD of one table file, from the decision's element list.

    ``strict`` (the shipped files) also requires the elements BHXH review needs filled (``required``);
    without it only the keys (MA_LK, STT) must be non-empty: the structure, types, sizes and formats
    are the same."""
    body = []
    for element in t.elements:
        no = f"decision row {element.decision_no}" if element.decision_no else "inserted by QĐ 4750"
        size = "n" if element.size is None else element.size
        body.append(
            f"<!-- {element.name}: {'số' if element.numeric else 'chuỗi'} ({size}), {no}"
            f"{', required' if element.required else ''} -->"
        )
        body.extend(_simple_type(element, strict))
    record = "\n".join(" " * 8 + line for line in body)
    fields = f"""<xs:complexType name="record">
    <xs:sequence>
{record}
    </xs:sequence>
  </xs:complexType>"""
    if t.list_tag is None:
        root = f'<xs:element name="{t.root}" type="record"/>'
    else:
        root = f"""<xs:element name="{t.root}">
    <xs:complexType>
      <xs:sequence>
        <xs:element name="{t.list_tag}">
          <xs:complexType>
            <xs:sequence>
              <xs:element name="{t.row_tag}" type="record" maxOccurs="unbounded"/>
            </xs:sequence>
          </xs:complexType>
        </xs:element>
      </xs:sequence>
    </xs:complexType>
  </xs:element>"""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!--
  {t.loai}: {t.title} (Decision 130/QĐ-BYT as amended by QĐ 4750/QĐ-BYT).
  Generated from qd130_tables.csv, the transcription of the decision's table: every element in the
  decision's order, its type and maximum size, the formats its description states. Do not edit:
  run `python -m hospital.billing.domain.xml130.tables`. Not an official BHXH schema.
-->
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" elementFormDefault="qualified">
  {fields}
  {root}
</xs:schema>
"""


def xsd_name(loai: str) -> str:
    return "checkin.xsd" if loai == "XML0" else f"{loai.lower()}.xsd"


def write_xsds(directory: Path) -> list[Path]:
    written = []
    for loai, t in tables().items():
        path = directory / xsd_name(loai)
        path.write_text(render_xsd(t), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":  # pragma: no cover - maintenance command
    for p in write_xsds(Path(__file__).parent / "xsd"):
        print(p)
