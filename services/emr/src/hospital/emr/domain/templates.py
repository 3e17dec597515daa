"""Clinical document templates: the sections each kind of note has (titles as on the Ministry of Health's
medical record forms, Circular 32/2023/TT-BYT appendix)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Template:
    code: str
    title: str
    sections: tuple[tuple[str, str], ...]  # (code, title)


TEMPLATES: dict[str, Template] = {
    t.code: t
    for t in (
        Template(
            "outpatient_note",
            "Phiếu khám bệnh ngoại trú",
            (
                ("reason", "Lý do khám"),
                ("history", "Bệnh sử"),
                ("examination", "Khám lâm sàng"),
                ("paraclinical", "Tóm tắt kết quả cận lâm sàng"),
                ("diagnosis", "Chẩn đoán"),
                ("treatment", "Hướng điều trị"),
                ("advice", "Lời dặn"),
            ),
        ),
        Template(
            "admission_note",
            "Bệnh án vào viện",
            (
                ("reason", "Lý do vào viện"),
                ("history", "Bệnh sử"),
                ("past_history", "Tiền sử bản thân và gia đình"),
                ("examination", "Khám toàn thân và các cơ quan"),
                ("summary", "Tóm tắt bệnh án"),
                ("diagnosis", "Chẩn đoán vào khoa"),
                ("prognosis", "Tiên lượng"),
                ("treatment", "Hướng điều trị"),
            ),
        ),
        Template(
            "progress_note",
            "Phiếu theo dõi diễn biến và y lệnh hằng ngày",
            (
                ("course", "Diễn biến bệnh"),
                ("examination", "Khám"),
                ("orders", "Y lệnh"),
                ("care", "Chế độ chăm sóc, dinh dưỡng"),
            ),
        ),
        Template(
            "discharge_summary",
            "Tóm tắt hồ sơ bệnh án ra viện",
            (
                ("reason", "Lý do vào viện"),
                ("course", "Quá trình bệnh lý và diễn biến lâm sàng"),
                ("paraclinical", "Tóm tắt kết quả xét nghiệm cận lâm sàng có giá trị chẩn đoán"),
                ("treatment", "Phương pháp điều trị"),
                ("condition", "Tình trạng người bệnh ra viện"),
                ("advice", "Hướng điều trị và các chế độ tiếp theo"),
            ),
        ),
        Template(
            "radiology_report",
            "Phiếu kết quả chẩn đoán hình ảnh",
            (
                ("technique", "Kỹ thuật"),
                ("findings", "Mô tả hình ảnh"),
                ("conclusion", "Kết luận"),
                ("recommendation", "Đề nghị"),
            ),
        ),
    )
}

KINDS = (*TEMPLATES, "prescription")
NOTE_KINDS = ("outpatient_note", "admission_note", "progress_note")
