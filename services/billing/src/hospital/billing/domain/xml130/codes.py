"""National code lists the claim tables use (QĐ 130/QĐ-BYT, QĐ 4750/QĐ-BYT, QĐ 824/QĐ-BYT common codes).

Only the lists whose values the decision's tables state are here; the long national lists (QĐ 5937
departments, occupations, ethnic groups, administrative units) are reference data of their own.
"""

from __future__ import annotations

from datetime import datetime, timedelta

#: MA_LOAI_KCB (QĐ 824/QĐ-BYT appendix 1, hình thức KBCB).
MA_LOAI_KCB = {
    "01": "Khám bệnh",
    "02": "Điều trị ngoại trú",
    "03": "Điều trị nội trú",
    "04": "Điều trị nội trú ban ngày",
    "05": "Điều trị ngoại trú các bệnh mạn tính dài ngày liên tục trong năm, có khám bệnh và lĩnh thuốc",
    "06": "Điều trị lưu tại Trạm Y tế tuyến xã, Phòng khám đa khoa khu vực",
    "07": "Nhận thuốc theo hẹn (không khám bệnh)",
    "08": "Điều trị ngoại trú các bệnh mạn tính dài ngày liên tục trong năm, có khám bệnh, DVKT/thuốc",
    "09": "Điều trị nội trú dưới 04 giờ",
    "10": "Các trường hợp khác",
}

#: MA_LOAI_RV (XML1 row 41).
MA_LOAI_RV = {
    1: "Ra viện",
    2: "Chuyển tuyến theo yêu cầu chuyên môn",
    3: "Trốn viện",
    4: "Xin ra viện",
    5: "Chuyển tuyến theo yêu cầu người bệnh",
}

#: KET_QUA_DTRI (XML1 row 40; code 8 added by QĐ 4750).
KET_QUA_DTRI = {
    1: "Khỏi",
    2: "Đỡ",
    3: "Không thay đổi",
    4: "Nặng hơn",
    5: "Tử vong",
    6: "Tiên lượng nặng xin về",
    7: "Chưa xác định",
    8: "Tử vong ngoại viện",
}

#: Admissions' discharge types -> (KET_QUA_DTRI, MA_LOAI_RV). A transfer or a discharge against advice
#: records no outcome in admissions: 7 (chưa xác định) until the EMR gives it.
DISCHARGE = {
    "recovered": (1, 1),
    "improved": (2, 1),
    "unchanged": (3, 1),
    "worse": (4, 1),
    "deceased": (5, 1),
    "transferred_out": (7, 2),
    "against_advice": (7, 4),
}

#: A stay shorter than this is "điều trị nội trú dưới 04 giờ" (MA_LOAI_KCB 09).
SHORT_STAY = timedelta(hours=4)


def loai_kcb(*, inpatient: bool, admitted_at: datetime | None, discharged_at: datetime | None) -> str:
    """MA_LOAI_KCB of a visit: 01 an outpatient examination, 03 an inpatient stay, 09 a stay under 4 hours."""
    if not inpatient:
        return "01"
    if admitted_at is not None and discharged_at is not None and discharged_at - admitted_at < SHORT_STAY:
        return "09"
    return "03"


def outcome(discharge_type: str | None) -> tuple[int, int]:
    """(KET_QUA_DTRI, MA_LOAI_RV) of a discharge type; an outpatient visit with none: (7, 1)."""
    return DISCHARGE.get(discharge_type or "", (7, 1))


#: MA_DOITUONG_KCB of a self-referred patient under Law 51/2024 (QĐ 3276/QĐ-BYT Phụ lục 1), by the
#: facility's level and former tier: (outpatient, inpatient).
SELF_REFERRED_LAW51 = {
    ("basic", "provincial"): ("1.14", "1.15"),
    ("basic", "central"): ("1.14", "1.15"),
    ("basic", "district"): ("3.3", "3.3"),
    ("specialised", "provincial"): ("1.18", "3.2"),
    ("specialised", "central"): ("3.1", "3.1"),
    ("specialised", "district"): ("3.3", "3.3"),
}


def doituong_kcb(
    route: str, *, inpatient: bool, law51: bool, level: str = "basic", former_tier: str = "provincial"
) -> str:
    """MA_DOITUONG_KCB of a visit from how the patient came (``Route`` value: registered, referred,
    emergency, self_referred): 1.1 at the registered facility, 1.3 with a referral paper, 2 an emergency;
    a self-referred patient by the facility's level under Law 51/2024 (``law51``), 3 before it."""
    if route == "registered":
        return "1.1"
    if route == "referred":
        return "1.3"
    if route == "emergency":
        return "2"
    if not law51:
        return "3"
    outpatient, inpatient_code = SELF_REFERRED_LAW51[(level, former_tier)]
    return inpatient_code if inpatient else outpatient
