"""The claim's clinical tables from the EMR's and the lab's events, over the real service and NATS (SQLite
and PostgreSQL): the signed re-visit appointment, sick-leave certificate and referral paper become XML14,
XML11 and XML13 (MA_LOAI_RV from the referral, the paper numbers, dates and the signing doctor's
practitioner identifier); verified lab results (the amended revision) and a signed imaging report become
XML4 with the charged service codes; signed notes become XML5 (an amended note in its latest version);
MA_BAC_SI is the staff identifier of the ordering or consulting doctor, not a sign-in subject. Each table is
validated against the decision's schema with the elements BHXH review needs filled."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from billing_testkit import eventually, invoice_of, overrides, settled
from lxml import etree
from test_order_charges import imaging_order, lab_order

from hospital.billing.domain.xml130.validate import table_schema
from hospital.billing.service import DEFINITION
from hospital.chassis.app import Service
from hospital.contracts.admissions.v1 import admissions_pb2 as adm
from hospital.contracts.common.v1 import types_pb2
from hospital.contracts.emr.v1 import emr_pb2
from hospital.contracts.emr.v1 import events_pb2 as emr_events
from hospital.contracts.imaging.v1 import events_pb2 as img_events
from hospital.contracts.lab.v1 import events_pb2 as lab_events
from hospital.contracts.lab.v1 import lab_pb2 as lab
from hospital.testing.services import http_client, running_service

HEAD = "3500100001"  # MA_TTDV: the facility head's identifier
DOCTOR = types_pb2.Actor(subject="user:bs.minh", display="BS. Lê Quang Minh", roles=["doctor"])
RADIOLOGIST = types_pb2.Actor(subject="user:bs.cdha.thao", display="BS. Đặng Thu Thảo", roles=["radiologist"])


@pytest.fixture
async def billing(database_url: str, nats_server, tmp_path, facility_credentials) -> AsyncIterator[Service]:
    async with running_service(
        DEFINITION,
        data_dir=tmp_path,
        database_url=database_url,
        nats_url=nats_server.url,
        facility_head_id=HEAD,
        **overrides(facility_credentials),
    ) as svc:
        yield svc


def paper(
    kind: str, visit_id: str, patient_id: str, signed_at: datetime, number: str, **data
) -> emr_events.PaperSigned:
    p = emr_pb2.Paper(
        id=str(uuid.uuid4()),
        encounter_id=f"enc-{visit_id}",
        patient_id=patient_id,
        kind=kind,
        number=number,
        status="signed",
        version=1,
        diagnoses=[emr_pb2.Diagnosis(icd10_code="J18.9", name="Viêm phổi, không đặc hiệu", main=True)],
        author="user:bs.minh",
        author_name="BS. Lê Quang Minh",
        **data,
    )
    p.signed_at.FromDatetime(signed_at)
    return emr_events.PaperSigned(
        paper=p,
        visit_id=visit_id,
        patient_id=patient_id,
        by=DOCTOR,
        department_code="NTH",
        encounter_kind="outpatient",
    )


def note(
    visit_id: str, patient_id: str, at: datetime, course: str, amends: str = ""
) -> emr_events.NoteSigned:
    doc = emr_pb2.Document(
        id=str(uuid.uuid4()),
        patient_id=patient_id,
        kind="outpatient_note",
        title="Phiếu khám bệnh ngoại trú",
        status="signed",
        version=2 if amends else 1,
        amends_document_id=amends,
        sections=[
            emr_pb2.DocumentSection(code="reason", title="Lý do khám", text="Ho, sốt 3 ngày"),
            emr_pb2.DocumentSection(code="examination", title="Khám lâm sàng", text=course),
            emr_pb2.DocumentSection(code="diagnosis", title="Chẩn đoán", text="Viêm phổi"),
        ],
    )
    doc.signature.signed_at.FromDatetime(at)
    return emr_events.NoteSigned(document=doc, visit_id=visit_id, by=DOCTOR)


def files_of(content: bytes) -> dict[str, bytes]:
    root = etree.fromstring(content)
    return {
        f.findtext("LOAIHOSO"): base64.b64decode(f.findtext("NOIDUNGFILE")) for f in root.iter("FILEHOSO")
    }


def strictly_valid(files: dict[str, bytes], loai: str) -> etree._Element:
    table_schema(loai, strict=True).validate(etree.fromstring(files[loai]))
    return etree.fromstring(files[loai])


async def test_papers_results_and_course_from_the_emr_make_the_claims_tables(billing, admissions) -> None:
    vid, pid, _ = await admissions.open_visit(
        kind=adm.VISIT_KIND_INSURED, card="HS4350120878811", name="Lê Thị Hồng Nhung"
    )
    await invoice_of(billing, vid)
    now = datetime.now(UTC)
    # the doctor's consultation (by user:bs.minh) and orders: a glucose and a blood count, a chest X-ray
    diag = emr_events.DiagnosisRecorded(
        encounter_id=f"enc-{vid}",
        patient_id=pid,
        visit_id=vid,
        diagnoses=[emr_pb2.Diagnosis(icd10_code="J18.9", name="Viêm phổi, không đặc hiệu", main=True)],
        by=DOCTOR,
    )
    diag.recorded_at.FromDatetime(now - timedelta(minutes=30))
    await admissions.publish("emr.diagnosis.recorded", diag)
    order = lab_order(vid, pid, ["GLU", "WBC"])
    order.ordering_doctor = "user:bs.minh"
    await admissions.publish("lab.order.received", lab_events.OrderReceived(order=order, source="grpc"))
    xray = imaging_order(pid, "CDHA-XQNGUC", "DX", "Chụp X-quang ngực thẳng", visit_ref=vid)
    await admissions.publish("imaging.order.scheduled", img_events.OrderScheduled(order=xray))
    await invoice_of(billing, vid, min_lines=4)

    # the lab's verified results (glucose amended to revision 2) and the radiologist's signed report
    def result(code: str, name: str, value: str, unit: str, revision: int) -> lab.Result:
        r = lab.Result(
            id=f"res-{order.id}-{code}",
            order_id=order.id,
            patient_id=pid,
            test_code=code,
            test_name=name,
            value=value,
            unit=unit,
            reference_range="3.9-6.4" if code == "GLU" else "4-10",
            status="verified" if revision == 1 else "amended",
            verified_by="user:ktv.xetnghiem.tuan",
            revision=revision,
        )
        r.verified_at.FromDatetime(now - timedelta(minutes=20 - revision))
        return r

    await admissions.publish(
        "lab.result.verified", lab_events.ResultVerified(result=result("GLU", "Glucose", "7.9", "mmol/L", 1))
    )
    await admissions.publish(
        "lab.result.verified", lab_events.ResultVerified(result=result("WBC", "Bạch cầu", "12.4", "G/L", 1))
    )
    await admissions.publish(
        "lab.result.amended",
        lab_events.ResultAmended(result=result("GLU", "Glucose", "8.1", "mmol/L", 2), previous_value="7.9"),
    )
    report = emr_pb2.Document(
        id=str(uuid.uuid4()),
        kind="radiology_report",
        title="Phiếu kết quả chẩn đoán hình ảnh",
        status="signed",
        version=1,
        sections=[
            emr_pb2.DocumentSection(
                code="findings", title="Mô tả hình ảnh", text="Đám mờ thùy dưới phổi phải"
            ),
            emr_pb2.DocumentSection(code="conclusion", title="Kết luận", text="Viêm phổi thùy dưới phải"),
        ],
    )
    report.signature.signed_at.FromDatetime(now - timedelta(minutes=10))
    await admissions.publish(
        "emr.report.signed",
        emr_events.ReportSigned(
            document=report,
            study_instance_uid="1.2.840.99.1." + str(uuid.uuid4().int % 10**9),
            accession_number=xray.accession_number,
            visit_id=vid,
            by=RADIOLOGIST,
        ),
    )
    # the course: a signed note, then its amendment (only the amendment counts)
    first = note(vid, pid, now - timedelta(minutes=25), "Phổi ran nổ đáy phải")
    await admissions.publish("emr.note.signed", first)
    await admissions.publish(
        "emr.note.signed",
        note(
            vid, pid, now - timedelta(minutes=5), "Phổi ran nổ đáy phải, SpO2 95%", amends=first.document.id
        ),
    )
    # the papers: a re-visit appointment (then a later one replacing it, and the first arriving again
    # late), a sick-leave certificate, a referral to a central hospital
    day = (now + timedelta(hours=7)).date()
    revisit = paper(
        "revisit",
        vid,
        pid,
        now - timedelta(minutes=4),
        "35001-HK0000001",
        revisit=emr_pb2.Revisit(revisit_date=(day + timedelta(days=7)).isoformat()),
    )
    await admissions.publish("emr.paper.signed", revisit)
    replaced = paper(
        "revisit",
        vid,
        pid,
        now - timedelta(minutes=3),
        "35001-HK0000002",
        revisit=emr_pb2.Revisit(revisit_date=(day + timedelta(days=14)).isoformat()),
    )
    await admissions.publish("emr.paper.signed", replaced)
    await admissions.publish(
        "emr.paper.signed",
        paper(
            "sick_leave",
            vid,
            pid,
            now - timedelta(minutes=3),
            "35001-NV0000007",
            sick_leave=emr_pb2.SickLeave(
                from_date=day.isoformat(),
                to_date=(day + timedelta(days=4)).isoformat(),
                days=5,
                social_insurance_number="3521234567",
                employer="Công ty TNHH May Thái Bình",
                treatment_method="Kháng sinh uống",
                serial="0000007",
                record_number="KB0000000123",
                form="CT07",
            ),
        ),
    )
    await admissions.publish(
        "emr.paper.signed",
        paper(
            "referral_paper",
            vid,
            pid,
            now - timedelta(minutes=2),
            "35001-CT0000003",
            referral=emr_pb2.Referral(
                to_facility_code="01929",
                to_facility_name="Bệnh viện Bạch Mai",
                reason_code=1,
                referral_type="expertise",
                clinical_signs="Sốt 39 độ, khó thở",
                course="Viêm phổi không đáp ứng kháng sinh",
                results_summary="X-quang: đám mờ phổi phải",
                treatment_given="Kháng sinh uống",
                services_given="Chụp X-quang ngực thẳng; Định lượng Glucose",
                treatment_direction="Kháng sinh phổ rộng",
                transport="Xe cứu thương",
                escort="Phạm Thị Hạnh",
                escort_title="Điều dưỡng",
                record_number="KB0000000123",
                paper_code="35001-CT0000003",
            ),
        ),
    )
    await admissions.publish("emr.paper.signed", revisit, event_id=str(uuid.uuid4()))  # late: changes nothing
    await admissions.close_visit(vid, pid)
    await settled(billing, admissions.js)

    async with http_client(billing, "cashier") as c:

        async def exported():
            r = await c.get(f"/api/v1/claims/{vid}/xml130")  # no ma_bac_si: the staff identifiers give it
            return r if r.status_code == 200 else None

        r = await eventually(exported)
    incomplete = r.headers.get("Hospital-Claim-Incomplete", "")
    assert not [
        e for e in incomplete.split(",") if e.split(".")[0] in ("XML4", "XML5", "XML11", "XML13", "XML14")
    ]
    files = files_of(r.content)
    xml1 = etree.fromstring(files["XML1"])
    assert xml1.findtext("MA_LOAI_RV") == "2"  # referred on for expertise (the referral paper)
    assert xml1.findtext("MA_NOI_DEN") == "01929"
    assert xml1.findtext("NGAY_TAI_KHAM") == (day + timedelta(days=14)).strftime("%Y%m%d")
    xml3 = etree.fromstring(files["XML3"])
    doctors = {row.findtext("MA_BAC_SI") for row in xml3.iter("CHI_TIET_DVKT")}
    assert doctors == {"003456/TB-CCHN"}  # the ordering / consulting doctor's identifier, no subject

    xml14 = strictly_valid(files, "XML14")
    assert xml14.findtext(".//SO_GIAYHEN_KL") == "35001-HK0000002"  # the later appointment
    assert xml14.findtext(".//NGAY_HEN_KL") == (day + timedelta(days=14)).strftime("%Y%m%d") + "0000"
    assert xml14.findtext(".//MA_BAC_SI") == "003456/TB-CCHN" and xml14.findtext(".//MA_TTDV") == HEAD
    xml11 = strictly_valid(files, "XML11")
    assert xml11.findtext(".//SO_CT") == "35001-NV0000007" and xml11.findtext(".//SO_NGAY_NGHI") == "5"
    assert xml11.findtext(".//MA_BHXH") == "3521234567" and xml11.findtext(".//TU_NGAY") == day.strftime(
        "%Y%m%d"
    )
    assert xml11.findtext(".//SO_SERI") == "0000007" and xml11.findtext(".//SO_KCB") == "KB0000000123"
    xml13 = strictly_valid(files, "XML13")
    assert xml13.findtext(".//SO_CHUYENTUYEN") == "35001-CT0000003"
    assert xml13.findtext(".//MA_NOI_DEN") == "01929" and xml13.findtext(".//MA_LYDO_CT") == "1"
    assert xml13.findtext(".//TEN_DICH_VU") == "Chụp X-quang ngực thẳng; Định lượng Glucose"
    assert xml13.findtext(".//PHUONGTIEN_VC") == "Xe cứu thương"
    assert xml13.findtext(".//MA_BAC_SI") == "003456/TB-CCHN"

    xml4 = strictly_valid(files, "XML4")
    rows = {r.findtext("MA_CHI_SO") or r.findtext("TEN_CHI_SO"): r for r in xml4.iter("CHI_TIET_CLS")}
    assert rows["GLU"].findtext("GIA_TRI") == "8.1"  # the amended value
    assert rows["GLU"].findtext("MA_DICH_VU") == "23.0075.1494"  # the glucose service
    assert rows["WBC"].findtext("MA_DICH_VU") == "22.0121.1370"  # a blood-count parameter: the blood count
    assert rows["GLU"].findtext("MA_BS_DOC_KQ") == "002217/TB-CCHN"
    assert rows["WBC"].findtext("DON_VI_DO") == "G/L"
    imaging = rows["Phiếu kết quả chẩn đoán hình ảnh"]
    assert imaging.findtext("MA_DICH_VU") == "18.0067.0028"  # the charged X-ray's service code
    assert imaging.findtext("KET_LUAN") == "Viêm phổi thùy dưới phải"
    assert "Đám mờ" in imaging.findtext("MO_TA") and imaging.findtext("MA_BS_DOC_KQ") == "004812/TB-CCHN"
    assert [r.findtext("STT") for r in xml4.iter("CHI_TIET_CLS")] == ["1", "2", "3"]
    xml5 = strictly_valid(files, "XML5")
    (course,) = list(xml5.iter("CHI_TIET_DIEN_BIEN_BENH"))
    assert (
        "SpO2 95%" in course.findtext("DIEN_BIEN_LS")
        and course.findtext("NGUOI_THUC_HIEN") == "003456/TB-CCHN"
    )
    assert course.findtext("GIAI_DOAN_BENH") == "Chẩn đoán: Viêm phổi"


async def test_a_subject_without_an_identifier_is_not_written_as_ma_bac_si(billing, admissions) -> None:
    vid, pid, _ = await admissions.open_visit(kind=adm.VISIT_KIND_INSURED, card="HS4350120878811")
    await invoice_of(billing, vid)
    order = lab_order(vid, pid, ["GLU"])
    order.ordering_doctor = "user:bs.moi"  # a new doctor the staff list does not have yet
    await admissions.publish("lab.order.received", lab_events.OrderReceived(order=order, source="grpc"))
    await invoice_of(billing, vid, min_lines=2)
    diag = emr_events.DiagnosisRecorded(
        encounter_id="e",
        patient_id=pid,
        visit_id=vid,
        diagnoses=[emr_pb2.Diagnosis(icd10_code="E11.9", name="Đái tháo đường typ 2", main=True)],
        by=types_pb2.Actor(subject="user:bs.moi"),
    )
    diag.recorded_at.FromDatetime(datetime.now(UTC))
    await admissions.publish("emr.diagnosis.recorded", diag)
    await admissions.close_visit(vid, pid)
    await settled(billing, admissions.js)
    async with http_client(billing, "cashier") as c:

        async def refused():
            r = await c.get(f"/api/v1/claims/{vid}/xml130")
            return r if r.status_code == 409 and r.json()["code"] == "claim.no_doctor" else None

        r = await eventually(refused)
        assert "user:bs.moi" in r.json()["detail"]
        # the administrator records the new doctor's identifier: the claim exports with it
        async with http_client(billing, "admin") as admin:
            put = await admin.put(
                "/api/v1/staff/user:bs.moi",
                json={
                    "practitioner_id": "007001/TB-CCHN",
                    "full_name": "BS. Trịnh Văn Mới",
                    "title": "Bác sĩ",
                },
            )
            assert put.status_code == 200, put.text
            bad = await admin.put("/api/v1/staff/user:bs.moi", json={"practitioner_id": "", "full_name": "x"})
            assert bad.status_code == 422
            listed = (await admin.get("/api/v1/staff")).json()["items"]
            assert any(
                s["subject"] == "user:bs.moi" and s["practitioner_id"] == "007001/TB-CCHN" for s in listed
            )
        r = await c.get(f"/api/v1/claims/{vid}/xml130")
        assert r.status_code == 200, r.text
    xml3 = etree.fromstring(files_of(r.content)["XML3"])
    assert {row.findtext("MA_BAC_SI") for row in xml3.iter("CHI_TIET_DVKT")} == {"007001/TB-CCHN"}
