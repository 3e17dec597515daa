"""National code lists a claim's elements are checked against, and the check itself.

The decision's descriptions name the list each element takes its codes from; the sources of each list
below are cited in docs/billing-insurance-rules.md §2 (Code lists). Where no list the project may carry
was found, the element's format is checked instead (said so at the list).

:func:`code_problems` is the claim builder's check: every coded element of a built ``HoSo`` against its
list, in words a cashier can act on.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from datetime import date

from hospital.billing.domain.xml130.codes import KET_QUA_DTRI, MA_LOAI_KCB, MA_LOAI_RV
from hospital.billing.domain.xml130.models import HoSo

#: MA_DOITUONG_KCB (mã đối tượng đến khám bệnh, chữa bệnh), QĐ 3276/QĐ-BYT (17/10/2025) Phụ lục 1,
#: which follows Law 51/2024/QH15 and Decree 188/2025/NĐ-CP and replaces QĐ 2010/QĐ-BYT Phụ lục 5.
#: 27 codes (the appendix's numbering skips 7.1). When several apply, the first in this order is used.
DOITUONG_KCB_2025 = {
    "1.1": "Đến KCB đúng cơ sở KCB nơi đăng ký KCB BHYT ban đầu (trừ mã 1.2)",
    "1.2": "Đi KCB tại cơ sở KCB cấp ban đầu",
    "1.3": "Đến KCB có phiếu chuyển cơ sở KCB",
    "1.4": "KCB khi thay đổi nơi lưu trú, nơi cư trú",
    "1.5": "Đến KCB theo phiếu hẹn khám lại",
    "1.6": "Người đã hiến bộ phận cơ thể phải điều trị ngay sau khi hiến",
    "1.7": "Trẻ sơ sinh phải điều trị ngay sau khi sinh ra",
    "1.11": "Tự đến KCB tại cơ sở KCB cấp ban đầu còn lại không thuộc mã 1.2",
    "1.12": "Tự đến KCB ngoại trú tại cơ sở cấp cơ bản dưới 50 điểm hoặc tạm xếp cấp cơ bản",
    "1.13": "Tự đến KCB ngoại trú tại cơ sở cấp cơ bản 50 - 70 điểm",
    "1.14": "Tự đến KCB ngoại trú tại cơ sở cấp cơ bản trước đây là tuyến tỉnh hoặc trung ương",
    "1.15": "Tự đến KCB nội trú tại cơ sở KCB cấp cơ bản",
    "1.16": "Tự đến KCB tại cơ sở cấp cơ bản, bệnh thuộc Phụ lục II Thông tư 01/2025/TT-BYT",
    "1.17": "Tự đến KCB tại cơ sở cấp chuyên sâu, bệnh thuộc Phụ lục I Thông tư 01/2025/TT-BYT",
    "1.18": "Tự đến KCB ngoại trú tại cơ sở cấp chuyên sâu trước đây là tuyến tỉnh",
    "2": "Cấp cứu",
    "3.1": "Tự đến KCB tại cơ sở cấp chuyên sâu trước đây là tuyến trung ương",
    "3.2": "Tự đến KCB nội trú tại cơ sở cấp chuyên sâu trước đây là tuyến tỉnh",
    "3.3": "Tự đến KCB tại cơ sở cấp cơ bản, cấp chuyên sâu trước đây là tuyến huyện",
    "3.6": "Dân tộc thiểu số, hộ nghèo vùng khó khăn, xã đảo đến KCB nội trú tại cơ sở cấp chuyên sâu",
    "7": "Lĩnh thuốc theo giấy hẹn trong dịch bệnh nhóm A hoặc bất khả kháng",
    "7.2": "Người bệnh uỷ quyền cho người khác đến lĩnh thuốc",
    "7.3": "Người bệnh lĩnh thuốc tại cơ sở KCB khác (dịch bệnh nhóm A)",
    "7.4": "Cơ sở KCB chuyển thuốc đến cho người bệnh (dịch bệnh nhóm A)",
    "8": "Thu hồi đề nghị thanh toán",
    "9": "Người bệnh không KCB BHYT",
    "10": "Đến lĩnh thuốc theo giấy hẹn (chỉ lĩnh thuốc, không khám bệnh)",
}

#: The codes the platform wrote for visits before the Law 51/2024 rules (the table in force then is not
#: transcribed here): registered, referred, emergency, self-referred.
DOITUONG_KCB_BEFORE_2025 = {
    "1.1": "Đúng tuyến: đăng ký KCB ban đầu",
    "1.3": "Đúng tuyến: chuyển tuyến",
    "2": "Cấp cứu",
    "3": "Trái tuyến",
}

#: MA_KHOA: the national department codes (QĐ 130 XML1 row 56: "theo Phụ lục số 5 ban hành kèm theo
#: Quyết định số 5937/QĐ-BYT"), K01..K47 as published HIS reference data carries them. The hospital's
#: departments and wards are mapped to them in reference data (table ``department_codes``).
DEPARTMENTS = {
    "K01": "Khoa Khám bệnh",
    "K02": "Khoa Hồi sức cấp cứu",
    "K03": "Khoa Nội tổng hợp",
    "K04": "Khoa Nội tim mạch",
    "K05": "Khoa Nội tiêu hóa",
    "K06": "Khoa Nội cơ - xương - khớp",
    "K07": "Khoa Nội thận - tiết niệu",
    "K08": "Khoa Nội tiết",
    "K09": "Khoa Dị ứng",
    "K10": "Khoa Huyết học lâm sàng",
    "K11": "Khoa Truyền nhiễm",
    "K12": "Khoa Lao",
    "K13": "Khoa Da liễu",
    "K14": "Khoa Thần kinh",
    "K15": "Khoa Tâm thần",
    "K16": "Khoa Y học cổ truyền",
    "K17": "Khoa Lão học",
    "K18": "Khoa Nhi",
    "K19": "Khoa Ngoại tổng hợp",
    "K20": "Khoa Ngoại thần kinh",
    "K21": "Khoa Ngoại lồng ngực",
    "K22": "Khoa Ngoại tiêu hóa",
    "K23": "Khoa Ngoại thận - tiết niệu",
    "K24": "Khoa Chấn thương chỉnh hình",
    "K25": "Khoa Bỏng",
    "K26": "Khoa Phẫu thuật - Gây mê hồi sức",
    "K27": "Khoa Phụ sản",
    "K28": "Khoa Tai - Mũi - Họng",
    "K29": "Khoa Răng - Hàm - Mặt",
    "K30": "Khoa Mắt",
    "K31": "Khoa Vật lý trị liệu - Phục hồi chức năng",
    "K32": "Khoa Y học hạt nhân",
    "K33": "Khoa Ung bướu (điều trị tia xạ)",
    "K34": "Khoa Truyền máu",
    "K35": "Khoa Lọc máu (thận nhân tạo)",
    "K36": "Khoa Huyết học",
    "K37": "Khoa Sinh hóa",
    "K38": "Khoa Vi sinh",
    "K39": "Khoa Chẩn đoán hình ảnh",
    "K40": "Khoa Thăm dò chức năng",
    "K41": "Khoa Nội soi",
    "K42": "Khoa Giải phẫu bệnh",
    "K43": "Khoa Chống nhiễm khuẩn",
    "K44": "Khoa Dược",
    "K45": "Khoa Dinh dưỡng",
    "K46": "Khoa Sinh học phân tử",
    "K47": "Khoa Xét nghiệm",
}

#: MA_DANTOC: the 54 ethnic groups of Việt Nam (Quyết định 121-TCTK/PPCĐ, 02/3/1979, General Statistics
#: Office; names as HL7 Việt Nam's CC0 code system vn-core-race carries them).
ETHNIC_GROUPS = {
    "01": "Kinh",
    "02": "Tày",
    "03": "Thái",
    "04": "Hoa",
    "05": "Khơ-me",
    "06": "Mường",
    "07": "Nùng",
    "08": "HMông",
    "09": "Dao",
    "10": "Gia-rai",
    "11": "Ngái",
    "12": "Ê-đê",
    "13": "Ba na",
    "14": "Xơ-Đăng",
    "15": "Sán Chay",
    "16": "Cơ-ho",
    "17": "Chăm",
    "18": "Sán Dìu",
    "19": "Hrê",
    "20": "Mnông",
    "21": "Ra-glai",
    "22": "Xtiêng",
    "23": "Bru-Vân Kiều",
    "24": "Thổ",
    "25": "Giáy",
    "26": "Cơ-tu",
    "27": "Gié Triêng",
    "28": "Mạ",
    "29": "Khơ-mú",
    "30": "Co",
    "31": "Tà-ôi",
    "32": "Chơ-ro",
    "33": "Kháng",
    "34": "Xinh-mun",
    "35": "Hà Nhì",
    "36": "Chu ru",
    "37": "Lào",
    "38": "La Chí",
    "39": "La Ha",
    "40": "Phù Lá",
    "41": "La Hủ",
    "42": "Lự",
    "43": "Lô Lô",
    "44": "Chứt",
    "45": "Mảng",
    "46": "Pà Thẻn",
    "47": "Co Lao",
    "48": "Cống",
    "49": "Bố Y",
    "50": "Si La",
    "51": "Pu Péo",
    "52": "Brâu",
    "53": "Ơ Đu",
    "54": "Rơ măm",
}

#: Provinces before 1 July 2025 (Quyết định 124/2004/QĐ-TTg codes; Thông tư 07/2016/TT-BCA Phụ lục 1
#: writes them with 3 digits, "001" for Hà Nội, as MATINH_CU_TRU does).
PROVINCES_2004 = {
    "01": "Hà Nội",
    "02": "Hà Giang",
    "04": "Cao Bằng",
    "06": "Bắc Kạn",
    "08": "Tuyên Quang",
    "10": "Lào Cai",
    "11": "Điện Biên",
    "12": "Lai Châu",
    "14": "Sơn La",
    "15": "Yên Bái",
    "17": "Hòa Bình",
    "19": "Thái Nguyên",
    "20": "Lạng Sơn",
    "22": "Quảng Ninh",
    "24": "Bắc Giang",
    "25": "Phú Thọ",
    "26": "Vĩnh Phúc",
    "27": "Bắc Ninh",
    "30": "Hải Dương",
    "31": "Hải Phòng",
    "33": "Hưng Yên",
    "34": "Thái Bình",
    "35": "Hà Nam",
    "36": "Nam Định",
    "37": "Ninh Bình",
    "38": "Thanh Hóa",
    "40": "Nghệ An",
    "42": "Hà Tĩnh",
    "44": "Quảng Bình",
    "45": "Quảng Trị",
    "46": "Thừa Thiên Huế",
    "48": "Đà Nẵng",
    "49": "Quảng Nam",
    "51": "Quảng Ngãi",
    "52": "Bình Định",
    "54": "Phú Yên",
    "56": "Khánh Hòa",
    "58": "Ninh Thuận",
    "60": "Bình Thuận",
    "62": "Kon Tum",
    "64": "Gia Lai",
    "66": "Đắk Lắk",
    "67": "Đắk Nông",
    "68": "Lâm Đồng",
    "70": "Bình Phước",
    "72": "Tây Ninh",
    "74": "Bình Dương",
    "75": "Đồng Nai",
    "77": "Bà Rịa - Vũng Tàu",
    "79": "Hồ Chí Minh",
    "80": "Long An",
    "82": "Tiền Giang",
    "83": "Bến Tre",
    "84": "Trà Vinh",
    "86": "Vĩnh Long",
    "87": "Đồng Tháp",
    "89": "An Giang",
    "91": "Kiên Giang",
    "92": "Cần Thơ",
    "93": "Hậu Giang",
    "94": "Sóc Trăng",
    "95": "Bạc Liêu",
    "96": "Cà Mau",
}

#: The 34 provinces from 1 July 2025 (Nghị quyết 202/2025/QH15); each keeps the code of one of the
#: provinces merged into it.
PROVINCES_2025 = {
    "01": "Thành phố Hà Nội",
    "04": "Cao Bằng",
    "08": "Tuyên Quang",
    "11": "Điện Biên",
    "12": "Lai Châu",
    "14": "Sơn La",
    "15": "Lào Cai",
    "19": "Thái Nguyên",
    "20": "Lạng Sơn",
    "22": "Quảng Ninh",
    "24": "Bắc Ninh",
    "25": "Phú Thọ",
    "31": "Thành phố Hải Phòng",
    "33": "Hưng Yên",
    "37": "Ninh Bình",
    "38": "Thanh Hóa",
    "40": "Nghệ An",
    "42": "Hà Tĩnh",
    "44": "Quảng Trị",
    "46": "Thành phố Huế",
    "48": "Thành phố Đà Nẵng",
    "51": "Quảng Ngãi",
    "52": "Gia Lai",
    "56": "Khánh Hòa",
    "66": "Đắk Lắk",
    "68": "Lâm Đồng",
    "75": "Đồng Nai",
    "79": "Thành phố Hồ Chí Minh",
    "80": "Tây Ninh",
    "82": "Đồng Tháp",
    "86": "Vĩnh Long",
    "91": "An Giang",
    "92": "Thành phố Cần Thơ",
    "96": "Cà Mau",
}

#: MA_NGHE_NGHIEP: 5-digit codes of the Vietnamese occupation list (Quyết định 34/2020/QĐ-TTg); its first
#: digit is one of these major groups; 00000 when the patient has no occupation (QĐ 130). The full
#: five-level list is not carried: the code's form and major group are checked.
OCCUPATION_MAJOR_GROUPS = {
    "0": "Lực lượng vũ trang",
    "1": "Nhà lãnh đạo trong các ngành, các cấp và các đơn vị",
    "2": "Nhà chuyên môn bậc cao",
    "3": "Nhà chuyên môn bậc trung",
    "4": "Nhân viên trợ lý văn phòng",
    "5": "Nhân viên dịch vụ và bán hàng",
    "6": "Lao động có kỹ năng trong nông nghiệp, lâm nghiệp và thủy sản",
    "7": "Lao động thủ công và các nghề nghiệp có liên quan khác",
    "8": "Thợ lắp ráp và vận hành máy móc, thiết bị",
    "9": "Lao động giản đơn",
}
NO_OCCUPATION = "00000"

# Forms of the codes whose list is not carried (QĐ 130's sizes; QĐ 124/2004/QĐ-TTg for districts and
# wards; Thông tư 07/2016/TT-BCA Phụ lục 2 for nationality).
_DISTRICT = re.compile(r"[0-9]{3}")
_WARD = re.compile(r"[0-9]{5}")
_NATIONALITY = re.compile(r"[0-9]{3}")
_OCCUPATION = re.compile(r"[0-9]{5}")

#: National codes of price-list items, by the XML element they fill:
#: MA_DICH_VU: technical services XX.YYYY.ZZZZ (chapter, number in the list of techniques, price code),
#: examinations XX.YYYY, bed-days KXX.YYYY; _GT (with anaesthesia) and _TB (not completed) suffixes, and
#: .K.<facility> for a sample sent to another facility (QĐ 130 XML3).
#: MA_THUOC: the active-ingredient code (e.g. 40.17 oxygen), several joined by "+" for a preparation the
#: facility makes; .KT / .NAT / .KTNAT for blood with the extra tests.
#: MA_VAT_TU: the supply group code N<group>.<subgroup>.<item>[.<more>].
NATIONAL_CODE_FORMS = {
    "MA_DICH_VU": re.compile(
        r"(?:[0-9]{2}\.[0-9]{4}(?:\.[0-9]{4})?|K[0-9]{2}\.[0-9]{4})(?:_GT|_TB)?(?:\.K\.[0-9]{5})?"
    ),
    "MA_THUOC": re.compile(
        r"[0-9]{2}\.[0-9]{1,5}[A-Z]?(?:\+[0-9]{2}\.[0-9]{1,5}[A-Z]?)*(?:\.(?:KT|NAT|KTNAT))?"
    ),
    "MA_VAT_TU": re.compile(r"N[0-9]{2}\.[0-9]{2}\.[0-9]{3}(?:\.[0-9]{1,4})*"),
}


def national_code_problem(element: str, code: str) -> str | None:
    """Why ``code`` cannot fill ``element`` (MA_DICH_VU, MA_THUOC, MA_VAT_TU), or None."""
    form = NATIONAL_CODE_FORMS[element]
    if not code.strip():
        return f"no national {element} code"
    if not form.fullmatch(code):
        return f"{code!r} is not a national {element} code"
    return None


def _plain(text: str) -> str:
    """Lower case, NFC, without spaces, hyphens and apostrophes: "Khơ Me", "khơ-me" and "Khơ-me" meet."""
    folded = unicodedata.normalize("NFC", text).casefold()
    return re.sub(r"[\s\-'’]+", "", folded)


_ETHNIC_BY_NAME = {_plain(name): code for code, name in ETHNIC_GROUPS.items()}


def ethnic_code(text: str) -> str:
    """MA_DANTOC of what reception recorded: a code of the list, or a group's name ("Kinh", "Dân tộc
    Tày", "khơ-me"); empty when it is neither (the claim then lists MA_DANTOC as missing)."""
    text = text.strip()
    if text in ETHNIC_GROUPS:
        return text
    name = _plain(text)
    for prefix in ("dântộc", "người"):
        name = name.removeprefix(prefix)
    return _ETHNIC_BY_NAME.get(name, "")


def occupation_code(text: str) -> str:
    """MA_NGHE_NGHIEP of what reception recorded: a 5-digit code of the occupation list, else empty."""
    text = text.strip()
    return text if _OCCUPATION.fullmatch(text) else ""


def province_code(code: str) -> str:
    """MATINH_CU_TRU as the decision writes it (Thông tư 07/2016/TT-BCA: 3 digits) from admissions'
    2-digit province code; empty stays empty."""
    code = code.strip()
    return code.zfill(3) if code else ""


def doituong_table(on: date, law51_from: date) -> dict[str, str]:
    """The MA_DOITUONG_KCB list in force for a visit that started on ``on``."""
    return DOITUONG_KCB_2025 if on >= law51_from else DOITUONG_KCB_BEFORE_2025


def _split(value: str | tuple[str, ...]) -> list[str]:
    if isinstance(value, tuple):
        return [v for v in value if v]
    return [v for v in value.split(";") if v]


def _department_problems(where: str, codes: Iterable[str]) -> list[str]:
    return [
        f"{where} {code!r} is not a national department code (QĐ 5937/QĐ-BYT Phụ lục 5)"
        for code in codes
        if code not in DEPARTMENTS
    ]


def code_problems(hoso: HoSo, *, doituong: dict[str, str]) -> list[str]:
    """Every coded element of ``hoso`` not in its national list (or not of its national form), as
    "<table>.<element> ..." sentences; empty when the claim's codes are all valid. Empty optional
    elements are not problems (what BHXH needs filled is :func:`validate.missing_elements`'s)."""
    s = hoso.tong_hop
    out: list[str] = []
    if s.ma_doituong_kcb not in doituong:
        out.append(f"XML1.MA_DOITUONG_KCB {s.ma_doituong_kcb!r} is not in the list in force for the visit")
    if s.ma_loai_kcb not in MA_LOAI_KCB:
        out.append(f"XML1.MA_LOAI_KCB {s.ma_loai_kcb!r} is not a national visit type")
    if s.ket_qua_dtri not in KET_QUA_DTRI:
        out.append(f"XML1.KET_QUA_DTRI {s.ket_qua_dtri!r} is not a national outcome")
    if s.ma_loai_rv not in MA_LOAI_RV:
        out.append(f"XML1.MA_LOAI_RV {s.ma_loai_rv!r} is not a national discharge type")
    out += _department_problems("XML1.MA_KHOA", _split(s.ma_khoa))
    if s.ma_dantoc and s.ma_dantoc not in ETHNIC_GROUPS:
        out.append(f"XML1.MA_DANTOC {s.ma_dantoc!r} is not one of the 54 ethnic groups")
    if s.matinh_cu_tru:
        code = s.matinh_cu_tru[-2:] if len(s.matinh_cu_tru) == 3 and s.matinh_cu_tru[0] == "0" else None
        if code is None or code not in PROVINCES_2004:
            out.append(f"XML1.MATINH_CU_TRU {s.matinh_cu_tru!r} is not a province code (3 digits)")
    if s.mahuyen_cu_tru and not _DISTRICT.fullmatch(s.mahuyen_cu_tru):
        out.append(f"XML1.MAHUYEN_CU_TRU {s.mahuyen_cu_tru!r} is not a district code (3 digits)")
    if s.maxa_cu_tru and not _WARD.fullmatch(s.maxa_cu_tru):
        out.append(f"XML1.MAXA_CU_TRU {s.maxa_cu_tru!r} is not a ward code (5 digits)")
    if s.ma_quoctich and not _NATIONALITY.fullmatch(s.ma_quoctich):
        out.append(f"XML1.MA_QUOCTICH {s.ma_quoctich!r} is not a nationality code (3 digits)")
    if s.ma_nghe_nghiep and not _OCCUPATION.fullmatch(s.ma_nghe_nghiep):
        out.append(f"XML1.MA_NGHE_NGHIEP {s.ma_nghe_nghiep!r} is not an occupation code (5 digits)")
    for line in hoso.thuoc:
        out += _department_problems(f"XML2[{line.stt}].MA_KHOA", [line.ma_khoa])
        problem = national_code_problem("MA_THUOC", line.ma_thuoc)
        if problem:
            out.append(f"XML2[{line.stt}].MA_THUOC: {problem}")
    for row in hoso.dvkt:
        out += _department_problems(f"XML3[{row.stt}].MA_KHOA", [row.ma_khoa])
        element = "MA_VAT_TU" if row.ma_vat_tu or not row.ma_dich_vu else "MA_DICH_VU"
        problem = national_code_problem(element, row.ma_vat_tu if element == "MA_VAT_TU" else row.ma_dich_vu)
        if problem:
            out.append(f"XML3[{row.stt}].{element}: {problem}")
    if hoso.giay_ra_vien is not None and hoso.giay_ra_vien.ma_khoa_rv:
        out += _department_problems("XML7.MA_KHOA_RV", _split(hoso.giay_ra_vien.ma_khoa_rv))
    return out
