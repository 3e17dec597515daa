"""From the doctor's EMR to the insurance claim file: the real EMR and billing services (each with its own
database), the real NATS JetStream bus between them, and admissions' events on the ADMISSIONS stream as
admissions publishes them (published here, so that a stay can have begun days ago). Three journeys:

* an outpatient whose doctor gives a re-visit appointment → XML14 (and XML1 NGAY_TAI_KHAM), the signed
  outpatient note → XML5;
* an inpatient discharged with a discharge paper and a sick-leave certificate → XML7 (with the outcome the
  paper states as XML1 KET_QUA_DTRI), XML11, the progress note → XML5, the admission note and the signed
  discharge summary → XML8 and XML1 LY_DO_VNT / CHAN_DOAN_VAO;
* a patient referred to a central hospital → XML13 and XML1 MA_LOAI_RV 2 / MA_NOI_DEN.

Each claim is signed by billing and every one of those tables is validated against the decision's schema
with the elements BHXH review needs filled (MA_BAC_SI, MA_BS are the doctor's practitioner identifier)."""

from __future__ import annotations

import base64
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import nats
import pytest
from lxml import etree

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "services" / "billing" / "tests"))
sys.path.insert(0, str(ROOT / "services" / "emr" / "tests"))

from billing_testkit import Admissions, make_facility_credentials, overrides  # noqa: E402
from emr_testkit import client  # noqa: E402

from hospital.billing.domain.xml130 import validate, verify  # noqa: E402
from hospital.billing.domain.xml130.validate import table_schema  # noqa: E402
from hospital.billing.service import DEFINITION as BILLING  # noqa: E402
from hospital.contracts.admissions.v1 import admissions_pb2 as adm  # noqa: E402
from hospital.contracts.admissions.v1 import events_pb2 as adm_events  # noqa: E402
from hospital.emr.service import DEFINITION as EMR  # noqa: E402
from hospital.testing.services import http_client, running_service  # noqa: E402
from hospital.testing.waits import wait_for  # noqa: E402

HEAD = "3500100001"
DOCTOR_ID = "003456/TB-CCHN"  # user:bs.minh in billing's staff identifiers
VN = ZoneInfo("Asia/Ho_Chi_Minh")


@pytest.fixture
async def stack(nats_server, tmp_path) -> Any:
    tag = uuid.uuid4().hex[:8]
    creds = tmp_path / "facility"
    creds.mkdir()
    key, cert = make_facility_credentials(creds)
    nc = await nats.connect(nats_server.url)
    async with (
        running_service(
            EMR,
            data_dir=tmp_path,
            database_url=f"sqlite+aiosqlite:///{tmp_path}/emr.db",
            nats_url=nats_server.url,
            admissions_durable=f"emr-adm-{tag}",
            lab_durable=f"emr-lab-{tag}",
            imaging_durable=f"emr-img-{tag}",
            shutdown_grace_seconds=2,
        ) as emr,
        running_service(
            BILLING,
            data_dir=tmp_path,
            database_url=f"sqlite+aiosqlite:///{tmp_path}/bil.db",
            nats_url=nats_server.url,
            facility_head_id=HEAD,
            **overrides((key, cert)),
        ) as bil,
    ):
        try:
            yield {"emr": emr, "bil": bil, "adm": Admissions(nc.jetstream()), "cert": cert}
        finally:
            await nc.close()


async def _encounter(emr: Any, patient_id: str, kind: str) -> dict[str, Any]:
    async with client(emr) as doctor:

        async def found() -> Any:
            r = await doctor.get("/api/v1/encounters", params={"patient_id": patient_id, "kind": kind})
            items = r.json()["items"] if r.status_code == 200 else []
            return items[0] if items else None

        return await wait_for(found, what=f"the EMR's {kind} encounter")


async def _consult(doctor: Any, encounter_id: str, *codes: str) -> None:
    body = {
        "expected_version": 0,
        "chief_complaint": "Ho, sốt",
        "treatment_plan": "Kháng sinh, hạ sốt",
        "diagnoses": [{"icd10_code": c, "main": n == 0} for n, c in enumerate(codes)],
    }
    r = await doctor.put(f"/api/v1/encounters/{encounter_id}/consultation", json=body)
    assert r.status_code == 200, r.text


async def _signed_note(doctor: Any, encounter_id: str, kind: str, sections: list[dict[str, str]]) -> None:
    r = await doctor.post(
        f"/api/v1/encounters/{encounter_id}/documents", json={"kind": kind, "sections": sections}
    )
    assert r.status_code == 201, r.text
    r = await doctor.post(f"/api/v1/documents/{r.json()['id']}/sign")
    assert r.status_code == 200, r.text


async def _signed_paper(doctor: Any, encounter_id: str, body: dict[str, Any]) -> dict[str, Any]:
    r = await doctor.post(f"/api/v1/encounters/{encounter_id}/papers", json=body)
    assert r.status_code == 201, r.text
    paper = r.json()
    r = await doctor.post(f"/api/v1/documents/{paper['document_id']}/sign")
    assert r.status_code == 200, r.text
    return paper


async def _claim(stack: dict[str, Any], visit_id: str, needs: tuple[str, ...]) -> dict[str, etree._Element]:
    """The visit's claim once billing has what the EMR signed: each table of ``needs`` present and valid
    against the decision's schema with the elements BHXH review needs filled."""
    async with http_client(stack["bil"], "cashier") as cashier:

        async def complete() -> Any:
            r = await cashier.get(f"/api/v1/claims/{visit_id}/xml130")
            if r.status_code != 200:
                return None
            files = {
                f.findtext("LOAIHOSO"): base64.b64decode(f.findtext("NOIDUNGFILE"))
                for f in etree.fromstring(r.content).iter("FILEHOSO")
            }
            return (r, files) if all(n in files for n in needs) else None

        r, files = await wait_for(complete, what=f"the claim with {needs}")
    validate(r.content, strict=False)
    verify(r.content, stack["cert"].read_bytes())
    incomplete = r.headers.get("Hospital-Claim-Incomplete", "")
    assert not [e for e in incomplete.split(",") if e.split(".")[0] in needs], incomplete
    out = {}
    for loai, data in files.items():
        root = etree.fromstring(data)
        if loai in needs:
            table_schema(loai, strict=True).validate(root)
        out[loai] = root
    return out


async def test_outpatient_with_a_revisit_appointment(stack) -> None:
    adm_pub, emr = stack["adm"], stack["emr"]
    vid, pid, _ = await adm_pub.open_visit(
        kind=adm.VISIT_KIND_INSURED, card="HS4350120878811", name="Trần Thị Thu Hà"
    )
    enc = await _encounter(emr, pid, "outpatient")
    today = datetime.now(VN).date()
    revisit_day = today + timedelta(days=14)
    async with client(emr) as doctor:
        await _consult(doctor, enc["id"], "I10", "E78.5")
        await _signed_note(
            doctor,
            enc["id"],
            "outpatient_note",
            [
                {"code": "reason", "text": "Đau đầu, chóng mặt"},
                {"code": "examination", "text": "HA 160/95 mmHg, tim đều"},
                {"code": "diagnosis", "text": "Tăng huyết áp"},
            ],
        )
        paper = await _signed_paper(
            doctor, enc["id"], {"kind": "revisit", "revisit": {"revisit_date": revisit_day.isoformat()}}
        )
    await adm_pub.close_visit(vid, pid)
    tables = await _claim(stack, vid, ("XML5", "XML14"))
    assert tables["XML1"].findtext("NGAY_TAI_KHAM") == revisit_day.strftime("%Y%m%d")
    assert tables["XML1"].findtext("MA_BENH_CHINH") == "I10"
    xml14 = tables["XML14"]
    assert xml14.findtext(".//SO_GIAYHEN_KL") == paper["number"]
    assert xml14.findtext(".//NGAY_HEN_KL") == revisit_day.strftime("%Y%m%d") + "0000"
    assert xml14.findtext(".//MA_BAC_SI") == DOCTOR_ID and xml14.findtext(".//MA_BENH_CHINH") == "I10"
    assert xml14.findtext(".//NGAY_CT") == today.strftime("%Y%m%d")
    (course,) = list(tables["XML5"].iter("CHI_TIET_DIEN_BIEN_BENH"))
    assert "HA 160/95" in course.findtext("DIEN_BIEN_LS") and course.findtext("NGUOI_THUC_HIEN") == DOCTOR_ID
    assert {r.findtext("MA_BAC_SI") for r in tables["XML3"].iter("CHI_TIET_DVKT")} == {DOCTOR_ID}


async def test_inpatient_discharged_with_a_discharge_paper_and_sick_leave(stack) -> None:
    adm_pub, emr = stack["adm"], stack["emr"]
    start = datetime.now(UTC) - timedelta(days=3)
    vid, pid, _ = await adm_pub.open_visit(
        kind=adm.VISIT_KIND_INSURED, card="HS4350120878811", name="Phạm Văn Đức", opened_at=start
    )
    admission = adm.Admission(
        id=str(uuid.uuid4()), patient_id=pid, visit_id=vid, ward_code="NOI", bed_code="NOI-101-01"
    )
    admission.admitted_at.FromDatetime(start + timedelta(hours=1))
    await adm_pub.publish("admissions.inpatient.admitted", adm_events.InpatientAdmitted(admission=admission))
    enc = await _encounter(emr, pid, "inpatient")
    admitted_day = enc["service_date"]
    today = datetime.now(VN).date()
    async with client(emr) as doctor:
        await _consult(doctor, enc["id"], "J18.9")
        await _signed_note(
            doctor,
            enc["id"],
            "admission_note",
            [
                {"code": "reason", "text": "Sốt cao, ho khạc đờm, khó thở"},
                {"code": "diagnosis", "text": "Viêm phổi thùy dưới phải"},
            ],
        )
        await _signed_note(
            doctor,
            enc["id"],
            "progress_note",
            [
                {"code": "course", "text": "Ngày 2: hết sốt, còn ho khạc đờm"},
                {"code": "examination", "text": "Phổi ran ẩm đáy phải giảm"},
            ],
        )
        await _signed_note(
            doctor,
            enc["id"],
            "discharge_summary",
            [
                {"code": "course", "text": "Sốt cao 3 ngày, điều trị kháng sinh đáp ứng tốt"},
                {"code": "paraclinical", "text": "X-quang: đám mờ đáy phải; CRP 85 mg/L"},
                {"code": "treatment", "text": "Ceftriaxon 2 g/ngày tĩnh mạch"},
            ],
        )
        discharge = await _signed_paper(
            doctor,
            enc["id"],
            {
                "kind": "discharge_paper",
                "discharge": {
                    "discharge_type": 1,
                    "treatment_result": 2,
                    "treatment_method": "Kháng sinh tĩnh mạch Ceftriaxon 7 ngày",
                    "note": "Tái khám sau 2 tuần, uống đủ thuốc",
                    "leave_days": 5,
                },
            },
        )
        leave = await _signed_paper(
            doctor,
            enc["id"],
            {
                "kind": "sick_leave",
                "sick_leave": {
                    "from_date": admitted_day,
                    "to_date": (today + timedelta(days=5)).isoformat(),
                    "social_insurance_number": "3521234567",
                    "employer": "Trường THCS Lê Quý Đôn, Thái Bình",
                    "treatment_method": "Kháng sinh tĩnh mạch",
                },
            },
        )
    end = adm_events.InpatientDischarged(
        admission=adm.Admission(id=admission.id, patient_id=pid), discharge_type="improved"
    )
    end.discharged_at.FromDatetime(datetime.now(UTC))
    await adm_pub.publish("admissions.inpatient.discharged", end)
    await adm_pub.close_visit(vid, pid)
    tables = await _claim(stack, vid, ("XML5", "XML7", "XML8", "XML11"))
    xml1 = tables["XML1"]
    assert xml1.findtext("MA_LOAI_KCB") == "03" and xml1.findtext("KET_QUA_DTRI") == "2"
    assert xml1.findtext("LY_DO_VNT") == "Sốt cao, ho khạc đờm, khó thở"
    assert xml1.findtext("CHAN_DOAN_VAO") == "Viêm phổi thùy dưới phải"
    xml8 = tables["XML8"]
    assert "đáp ứng tốt" in xml8.findtext(".//QT_BENHLY") and "CRP" in xml8.findtext(".//TOMTAT_KQ")
    assert xml8.findtext(".//KET_QUA_DTRI") == "2"
    assert xml1.findtext("MA_LOAI_RV") == "1" and "Ceftriaxon" in xml1.findtext("PP_DIEU_TRI")
    xml7 = tables["XML7"]
    assert xml7.findtext(".//SO_LUU_TRU") == discharge["number"] and xml7.findtext(".//MA_BS") == DOCTOR_ID
    assert xml7.findtext(".//TEN_BS") == "BS. Lê Quang Minh" and xml7.findtext(".//MA_KHOA_RV")
    assert xml7.findtext(".//SO_NGAY_NGHI") == "5" and "Tái khám" in xml7.findtext(".//GHI_CHU")
    assert xml7.findtext(".//NGAY_CT") == today.strftime("%Y%m%d")
    xml11 = tables["XML11"]
    assert xml11.findtext(".//SO_CT") == leave["number"] and xml11.findtext(".//MA_BHXH") == "3521234567"
    days = (today + timedelta(days=5) - datetime.fromisoformat(admitted_day).date()).days + 1
    assert xml11.findtext(".//SO_NGAY_NGHI") == str(days) and xml11.findtext(".//MAU_SO") == "CT07"
    assert xml11.findtext(".//MA_BS") == DOCTOR_ID and xml11.findtext(".//MA_TTDV") == HEAD
    admitted, progress = list(tables["XML5"].iter("CHI_TIET_DIEN_BIEN_BENH"))  # oldest first
    assert "Sốt cao" in admitted.findtext("DIEN_BIEN_LS") and "hết sốt" in progress.findtext("DIEN_BIEN_LS")


async def test_a_patient_referred_to_a_central_hospital(stack) -> None:
    adm_pub, emr = stack["adm"], stack["emr"]
    vid, pid, _ = await adm_pub.open_visit(
        kind=adm.VISIT_KIND_INSURED, card="HS4350120878811", name="Nguyễn Văn Bình"
    )
    enc = await _encounter(emr, pid, "outpatient")
    async with client(emr) as doctor:
        await _consult(doctor, enc["id"], "I21.9")
        paper = await _signed_paper(
            doctor,
            enc["id"],
            {
                "kind": "referral_paper",
                "referral": {
                    "to_facility_code": "01929",
                    "to_facility_name": "Bệnh viện Bạch Mai",
                    "reason_code": 1,
                    "clinical_signs": "Đau ngực trái dữ dội 2 giờ, vã mồ hôi",
                    "course": "Điện tim ST chênh lên V1-V4",
                    "results_summary": "Troponin T tăng",
                    "treatment_given": "Aspirin 300 mg, Clopidogrel 300 mg",
                    "services_given": "Điện tim thường; Định lượng Troponin T",
                    "treatment_direction": "Can thiệp mạch vành cấp cứu",
                    "transport": "Xe cứu thương",
                    "escort": "BS. Hoàng Minh Tuấn",
                    "escort_title": "Bác sĩ",
                },
            },
        )
    await adm_pub.close_visit(vid, pid)
    tables = await _claim(stack, vid, ("XML13",))
    xml1 = tables["XML1"]
    assert xml1.findtext("MA_LOAI_RV") == "2" and xml1.findtext("MA_NOI_DEN") == "01929"
    xml13 = tables["XML13"]
    assert xml13.findtext(".//SO_CHUYENTUYEN") == paper["number"]
    assert xml13.findtext(".//GIAY_CHUYEN_TUYEN") == paper["referral"]["paper_code"]
    assert xml13.findtext(".//MA_NOI_DEN") == "01929" and xml13.findtext(".//MA_LYDO_CT") == "1"
    assert xml13.findtext(".//MA_BENH_CHINH") == "I21.9" and xml13.findtext(".//MA_BAC_SI") == DOCTOR_ID
    assert xml13.findtext(".//HUONG_DIEU_TRI") == "Can thiệp mạch vành cấp cứu"
    assert xml13.findtext(".//SO_HOSO") == enc["visit_code"]
