"""One outpatient's whole journey through every service, each a real running service with its own database
(on PostgreSQL, and again on SQLite), the real NATS JetStream bus and SeaweedFS S3, driven only at the
services' public doors (HTTP, gRPC, the lab's MLLP port, the imaging DICOM port with dcmtk's storescu):

reception registers and opens an insured visit (admissions) → the EMR opens the encounter → the doctor saves
a consultation and orders a glucose + blood count and a chest X-ray (EMR CPOE → lab and imaging over gRPC)
→ the analyzers send their results over MLLP (one critical value) → the technician verifies them → the EMR
shows them on the order and the critical value stays open until acknowledged → the modality sends the study
(storescu) → imaging links it to the order → the EMR shows it → billing has charged the exam, the tests and
the X-ray with the insurance split → the cashier issues the invoice, a signed VNPay IPN pays it → the closed
visit's QĐ130 claim exports signed. Every chart read is audited and every event hop happened exactly once."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import grpc
import nats
import pydicom
import pytest
from lxml import etree
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from sqlalchemy import select

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "services" / "billing" / "tests"))
sys.path.insert(0, str(ROOT / "services" / "emr" / "tests"))

from billing_testkit import VNPAY_SECRET, make_facility_credentials, vnpay_params  # noqa: E402
from emr_testkit import token  # noqa: E402

from hospital.admissions.service import DEFINITION as ADMISSIONS  # noqa: E402
from hospital.billing.adapters.tables import charges, visits  # noqa: E402
from hospital.billing.domain.xml130 import validate, verify  # noqa: E402
from hospital.billing.service import DEFINITION as BILLING  # noqa: E402
from hospital.chassis.db import Database, audit_log_table  # noqa: E402
from hospital.chassis.rpc import call_metadata  # noqa: E402
from hospital.contracts.imaging.v1 import imaging_pb2, imaging_pb2_grpc  # noqa: E402
from hospital.contracts.lab.v1 import lab_pb2, lab_pb2_grpc  # noqa: E402
from hospital.emr.service import DEFINITION as EMR  # noqa: E402
from hospital.imaging.service import DEFINITION as IMAGING  # noqa: E402
from hospital.lab.adapters.tables import orders as lab_orders  # noqa: E402
from hospital.lab.adapters.tables import results as lab_results  # noqa: E402
from hospital.lab.service import DEFINITION as LAB  # noqa: E402
from hospital.lab.simulator import send_mllp  # noqa: E402
from hospital.testing.servers import free_port  # noqa: E402
from hospital.testing.services import http_client, issuer_for, running_service  # noqa: E402
from hospital.testing.waits import consumer_settled, wait_for  # noqa: E402

PATIENT = {
    "full_name": "Nguyễn Thị Hồng Nhung",
    "birth_date": "1968-10-20",
    "sex": "female",
    "cccd": "034168012345",
    "bhyt_number": "HT3340123456789",
    "bhyt_valid_from": "2026-01-01",
    "bhyt_valid_to": "2026-12-31",
    "phone": "0912345678",
    "address_line": "Số 12 ngõ 34 phố Lê Lợi",
}

CONSULTATION = {
    "expected_version": 0,
    "chief_complaint": "Khát nhiều, tiểu nhiều, ho 1 tuần",
    "history": "Khát nước, tiểu nhiều, sụt 3 kg trong 1 tháng; ho khan, sốt nhẹ về chiều.",
    "examination": "Ran ẩm đáy phổi phải. Tim đều.",
    "vitals": {
        "systolic_bp": 150,
        "diastolic_bp": 92,
        "pulse": 96,
        "temperature_c": 37.8,
        "spo2": 95,
        "respiratory_rate": 20,
        "weight_kg": 58,
        "height_cm": 155,
    },
    "diagnoses": [
        {"icd10_code": "E11.9", "main": True, "note": "Đái tháo đường típ 2 mới phát hiện"},
        {"icd10_code": "J18.9", "main": False},
        {"icd10_code": "I10", "main": False},
    ],
    "treatment_plan": "Xét nghiệm đường máu, công thức máu; X-quang ngực thẳng.",
}

# What the analyzers send, built like the lab's Mindray ORU^R01 (v2.3.1, LOINC codes mapped by the
# instrument's catalogue entry) and cobas OUL^R22 (IHE LAW 2.5.1) captures; the barcode is the order's.
CBC_ORU = (
    "MSH|^~\\&|BC-5380|Mindray|||20261207093000||ORU^R01|J{n}|P|2.3.1||||||UNICODE\r"
    "PID|1||{code}^^^BVDK^MR||Nguyễn^Thị Hồng Nhung||19681020|F\r"
    "PV1|1||Khoa Khám bệnh\r"
    "OBR|1||{barcode}|00001^Automated Count^99MRC|||20261207091500\r"
    "OBX|1|NM|6690-2^WBC^LN||12.5|10*9/L|4.0-10.0|H|||F|||20261207092000\r"
    "OBX|2|NM|718-7^HGB^LN||128|g/L|120-150|N|||F\r"
    "OBX|3|NM|777-3^PLT^LN||15|10*9/L|150-400|LL|||F\r"
    "NTE|1||Tiểu cầu rất thấp, đã kiểm tra lam máu\r"
)
GLU_OUL = (
    "MSH|^~\\&|cobas|LAB||LIS|20261207094000||OUL^R22^OUL_R22|K{n}|P|2.5.1|||NE|AL||UNICODE UTF-8\r"
    "PID|1||{code}^^^BVDK^MR||Nguyễn^Thị Hồng Nhung||19681020|F\r"
    "SPM|1|{barcode}&LIS||SER^Serum^HL70487\r"
    "OBR|1|PL{n}|FL{n}|14749-6^Glucose^LN\r"
    "ORC|SC|PL{n}|FL{n}\r"
    "OBX|1|NM|14749-6^Glucose^LN|1|14.2|mmol/L|3.9-6.4|H|||F|||20261207093500||||cobas-c311\r"
)


@pytest.fixture(params=["postgres", "sqlite"])
async def platform(request, nats_server, s3_server, tmp_path):
    """Every service on its own database (PostgreSQL or SQLite), sharing the session's NATS and S3."""
    tag = uuid.uuid4().hex[:8]
    names = ("adm", "lab", "img", "emr", "bil")
    if request.param == "sqlite":
        urls = {name: f"sqlite+aiosqlite:///{tmp_path}/{name}.db" for name in names}
    else:
        pg = request.getfixturevalue("pg_server")
        urls = {name: await pg.create_database(f"j{name}_{tag}") for name in names}
    creds_dir = tmp_path / "facility"
    creds_dir.mkdir()
    key, cert = make_facility_credentials(creds_dir)
    async with (
        running_service(
            ADMISSIONS, data_dir=tmp_path, database_url=urls["adm"], nats_url=nats_server.url
        ) as adm,
        running_service(
            LAB,
            data_dir=tmp_path,
            database_url=urls["lab"],
            nats_url=nats_server.url,
            mllp_port=free_port(),
            astm_port=free_port(),
            instrument_timezone="Asia/Ho_Chi_Minh",
            admissions_grpc=f"127.0.0.1:{adm.settings.grpc_port}",
        ) as lab,
        running_service(
            IMAGING,
            data_dir=tmp_path,
            database_url=urls["img"],
            nats_url=nats_server.url,
            s3_endpoint=s3_server.endpoint,
            s3_access_key=s3_server.access_key,
            s3_secret_key=s3_server.secret_key,
            dicom_host="127.0.0.1",
            dicom_port=free_port(),
            study_quiet_seconds=0.5,  # a study is complete once no image came for this long
            shutdown_grace_seconds=2,
        ) as img,
        running_service(
            EMR,
            data_dir=tmp_path,
            database_url=urls["emr"],
            nats_url=nats_server.url,
            lab_grpc_target=f"127.0.0.1:{lab.settings.grpc_port}",
            imaging_grpc_target=f"127.0.0.1:{img.settings.grpc_port}",
            admissions_durable=f"emr-adm-{tag}",
            lab_durable=f"emr-lab-{tag}",
            imaging_durable=f"emr-img-{tag}",
            order_retry_base_seconds=0.2,
            shutdown_grace_seconds=2,
        ) as emr,
        running_service(
            BILLING,
            data_dir=tmp_path,
            database_url=urls["bil"],
            nats_url=nats_server.url,
            vnpay_hash_secret=VNPAY_SECRET,
            facility_key_file=key,
            facility_cert_file=cert,
            admissions_durable=f"bil-adm-{tag}",
            lab_durable=f"bil-lab-{tag}",
            imaging_durable=f"bil-img-{tag}",
            emr_durable=f"bil-emr-{tag}",
            shutdown_grace_seconds=2,
        ) as bil,
    ):
        yield {"adm": adm, "lab": lab, "img": img, "emr": emr, "bil": bil, "tag": tag, "cert": cert}


async def _rows(svc: Any, query: Any) -> list[dict[str, Any]]:
    db = Database(svc.settings.database_url)
    try:
        async with db.session() as s:
            return [dict(r) for r in (await s.execute(query)).mappings().all()]
    finally:
        await db.dispose()


def _study(tmp: Path, patient_code: str, accession: str) -> tuple[Path, str]:
    """pydicom's CT test image re-stamped as this patient's chest X-ray study with the order's accession."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientID, ds.AccessionNumber = patient_code, accession
    ds.PatientName = "Nguyễn^Thị Hồng Nhung"
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyDescription = "X-quang ngực thẳng"
    path = tmp / "xq.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path, str(ds.StudyInstanceUID)


async def test_one_patient_journey_through_every_service(platform, nats_server, tmp_path) -> None:
    adm, lab, img, emr, bil = (platform[k] for k in ("adm", "lab", "img", "emr", "bil"))
    tag = platform["tag"]

    # 1. reception registers the patient and opens an insured outpatient visit
    async with http_client(adm, "receptionist") as reception:
        r = await reception.post("/api/v1/patients", json=PATIENT)
        assert r.status_code == 201, r.text
        patient = r.json()
        r = await reception.post(
            "/api/v1/visits",
            json={
                "patient_id": patient["id"],
                "room": "P101",
                "kind": "insured",
                "insurance_card_number": PATIENT["bhyt_number"],
            },
        )
        assert r.status_code in (200, 201), r.text
        visit = r.json()
    assert patient["full_name"] == "Nguyễn Thị Hồng Nhung" and patient["cccd"] == PATIENT["cccd"]

    # ... the EMR opens the encounter from admissions.visit.opened
    async with http_client(emr, token=token(emr)) as anyone:

        async def encounter() -> Any:
            r = await anyone.get("/api/v1/encounters", params={"patient_id": patient["id"]})
            return r.json()["items"] if r.status_code == 200 and r.json()["items"] else None

        (enc,) = await wait_for(encounter, what="the EMR encounter of the visit")
    assert enc["visit_id"] == visit["id"] and enc["patient_code"] == patient["patient_code"]
    assert enc["patient_name"] == "Nguyễn Thị Hồng Nhung" and enc["status"] == "open"
    dept = enc["department_code"]
    doctor_token = token(emr, departments=[dept])

    # 2. the doctor of that department saves the consultation and orders tests and a chest X-ray
    async with http_client(emr, token=doctor_token) as doctor:
        r = await doctor.put(f"/api/v1/encounters/{enc['id']}/consultation", json=CONSULTATION)
        assert r.status_code == 200, r.text
        saved = r.json()
        assert [d["icd10_code"] for d in saved["diagnoses"] if d["main"]] == ["E11.9"]
        assert {d["icd10_code"] for d in saved["diagnoses"] if not d["main"]} == {"J18.9", "I10"}
        assert saved["vitals"]["bmi"] == pytest.approx(58 / 1.55**2, abs=0.1)

        r = await doctor.post(
            f"/api/v1/encounters/{enc['id']}/orders",
            json={
                "request_id": f"kham-{tag}",
                "lab": [
                    {
                        "tests": ["GLU", "HBA1C", "URE", "CRE", "ALT", "AST", "CBC"],
                        "clinical_note": "Nghi đái tháo đường, viêm phổi",
                    }
                ],
                "imaging": [
                    {"procedure_code": "XQ-NGUC", "description": "X-quang ngực thẳng", "modality": "DX"}
                ],
            },
        )
        assert r.status_code == 201, r.text
        lab_o, img_o = r.json()["orders"]

        async def placed() -> Any:
            items = (await doctor.get(f"/api/v1/encounters/{enc['id']}/orders")).json()["items"]
            return items if all(o["status"] not in ("pending",) for o in items) else None

        orders = {o["id"]: o for o in await wait_for(placed, what="orders placed in lab and imaging")}
        lab_o, img_o = orders[lab_o["id"]], orders[img_o["id"]]
    assert lab_o["status"] == "placed" and lab_o["downstream_id"], lab_o
    assert img_o["status"] == "placed" and img_o["accession_number"], img_o

    # ... the orders exist in lab and imaging with the visit reference
    svc_md = call_metadata(issuer_for(emr).mint_for_service("journey"))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{lab.settings.grpc_port}") as ch:
        lab_order = await lab_pb2_grpc.LabServiceStub(ch).GetOrder(
            lab_pb2.GetOrderRequest(order_id=lab_o["downstream_id"]), metadata=svc_md
        )
    assert lab_order.visit_id == visit["id"] and lab_order.patient.id == patient["id"]
    assert lab_order.placer_order_number == lab_o["placer_order_number"]
    barcodes = {i.test_code: i.specimen_barcode for i in lab_order.items}
    assert {"GLU", "WBC", "HGB", "PLT"} <= set(barcodes) and barcodes["GLU"] != barcodes["PLT"]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{img.settings.grpc_port}") as ch:
        img_order = await imaging_pb2_grpc.ImagingServiceStub(ch).GetOrder(
            imaging_pb2.GetOrderRequest(id=img_o["downstream_id"]), metadata=svc_md
        )
    assert img_order.accession_number == img_o["accession_number"] and img_order.visit_ref == visit["id"]
    assert img_order.patient.patient_code == patient["patient_code"]

    # 3. the analyzers send their results over MLLP: a blood count with a critical platelet count, a glucose
    mllp = ("127.0.0.1", lab.settings.mllp_port)
    fill = {"code": patient["patient_code"], "n": tag}
    (ack,) = await send_mllp(*mllp, [CBC_ORU.format(barcode=barcodes["PLT"], **fill)])
    assert f"MSA|AA|J{tag}".encode() in ack, ack
    (ack,) = await send_mllp(*mllp, [GLU_OUL.format(barcode=barcodes["GLU"], **fill)])
    assert f"MSA|AA|K{tag}".encode() in ack, ack
    # the hematology analyzer lost that ACK and sends the same message again: acknowledged, stored once
    (ack,) = await send_mllp(*mllp, [CBC_ORU.format(barcode=barcodes["PLT"], **fill)])
    assert f"MSA|AA|J{tag}".encode() in ack, ack
    async with http_client(lab, "lab_technician") as tech:

        async def received() -> Any:
            r = await tech.get(f"/api/v1/orders/{lab_order.id}/results")
            got = {x["test_code"]: x for x in r.json()["results"]} if r.status_code == 200 else {}
            return got if {"GLU", "WBC", "HGB", "PLT"} <= set(got) else None  # the rest still running

        res = await wait_for(received, what="the analyzer results in the lab")
        assert (res["PLT"]["value"], res["PLT"]["flag"], res["PLT"]["critical"]) == ("15", "LL", True)
        assert (res["GLU"]["value"], res["GLU"]["flag"], res["GLU"]["critical"]) == ("14.2", "H", False)
        assert res["WBC"]["unit"] == "10^9/L" and all(x["status"] == "preliminary" for x in res.values())
        # ... the technician verifies them
        r = await tech.post("/api/v1/results/verify", json={"result_ids": [x["id"] for x in res.values()]})
        assert r.status_code == 200, r.text
        assert {x["status"] for x in r.json()["items"]} == {"verified"}

    # ... the EMR shows the results on the order, the critical value open until acknowledged
    async with http_client(emr, token=doctor_token) as doctor:

        async def in_chart() -> Any:
            r = await doctor.get(
                f"/api/v1/patients/{patient['id']}/results", params={"encounter_id": enc["id"]}
            )
            got = {x["test_code"]: x for x in r.json()["results"]}
            return got if set(res) <= set(got) else None

        chart_results = await wait_for(in_chart, what="the verified results in the EMR")
        assert {x["order_id"] for x in chart_results.values()} == {lab_o["id"]}
        assert {x["lab_order_id"] for x in chart_results.values()} == {lab_order.id}
        assert chart_results["GLU"]["value"] == "14.2" and chart_results["GLU"]["status"] == "verified"

        async def alert() -> Any:
            r = await doctor.get("/api/v1/critical-alerts", params={"patient_id": patient["id"]})
            return r.json()["items"]

        (crit,) = await wait_for(alert, what="the critical platelet count open in the EMR")
        assert (crit["test_code"], crit["value"], crit["status"]) == ("PLT", "15", "open")
        assert crit["encounter_id"] == enc["id"] and crit["order_id"] == lab_o["id"]
        r = await doctor.post(
            f"/api/v1/critical-alerts/{crit['id']}/acknowledge",
            json={"read_back": "Tiểu cầu 15 G/L, đã nhắc lại"},
        )
        assert r.status_code == 200 and r.json()["status"] == "acknowledged", r.text
        assert (await alert()) == []

    # 4. the modality sends the study with storescu; imaging links it to the order
    path, study_uid = _study(tmp_path, patient["patient_code"], img_o["accession_number"])
    sent = await asyncio.to_thread(
        subprocess.run,
        [
            "storescu",
            "-aet",
            "XQ_KKB",
            "-aec",
            "HOSPITAL_PACS",
            "127.0.0.1",
            str(img.settings.dicom_port),
            path,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sent.returncode == 0, sent.stderr
    async with http_client(img, "radiographer") as radiographer:

        async def linked() -> Any:
            r = await radiographer.get(f"/api/v1/studies/{study_uid}")
            return r.json() if r.status_code == 200 and r.json().get("order_id") else None

        linked_study = await wait_for(linked, what="the study linked to the imaging order")
    assert linked_study["order_id"] == img_order.id and linked_study["reconciliation"] == "matched"
    assert linked_study["accession_number"] == img_o["accession_number"]
    # ... and the EMR shows it on the order
    async with http_client(emr, token=doctor_token) as doctor:

        async def study_in_chart() -> Any:
            r = await doctor.get(
                f"/api/v1/patients/{patient['id']}/results", params={"encounter_id": enc["id"]}
            )
            return [s for s in r.json()["studies"] if s["study_instance_uid"] == study_uid]

        (study,) = await wait_for(study_in_chart, what="the study in the EMR")
        assert study["order_id"] == img_o["id"] and study["accession_number"] == img_o["accession_number"]
        assert study["instance_count"] == 1 and study_uid in study["viewer_url"]
        chart = (await doctor.get(f"/api/v1/patients/{patient['id']}/chart")).json()
        assert {r["test_code"] for r in chart["results"]} >= {"GLU", "PLT"}
        assert [s["study_instance_uid"] for s in chart["studies"]] == [study_uid]
        assert chart["critical_alerts"] == []

    # 5. billing has charged the exam, the tests and the X-ray to the visit, with the insurance split
    async with http_client(bil, "cashier") as cashier:

        async def billed() -> Any:
            r = await cashier.get(f"/api/v1/visits/{visit['id']}/invoice")
            if r.status_code != 200:
                return None
            inv = r.json()
            cats = sorted(ln["category"] for ln in inv["lines"])
            exam = any(ln["price_code"] == "KB-THUONG" for ln in inv["lines"])  # from admissions' event
            return inv if cats.count("lab") >= 7 and "imaging" in cats and exam else None

        inv = await wait_for(billed, what="the exam, lab and imaging charges on the visit's invoice")
        codes = sorted(ln["price_code"] for ln in inv["lines"])
        assert codes == sorted(
            [
                "KB-THUONG",
                "XN-CTM",
                "XN-GLU",
                "XN-HBA1C",
                "XN-URE",
                "XN-CRE",
                "XN-ALT",
                "XN-AST",
                "CDHA-XQNGUC",
            ]
        ), codes
        assert inv["visit"]["card_number"] == PATIENT["bhyt_number"]
        assert 0 < inv["insurance_amount"] < inv["total_amount"]
        assert inv["insurance_amount"] + inv["patient_amount"] == inv["total_amount"]
        # ... the cashier issues the invoice, a signed VNPay IPN pays the patient's share
        r = await cashier.post(f"/api/v1/invoices/{inv['id']}/issue")
        assert r.status_code == 200, r.text
        due = r.json()["balance"]
        assert due == inv["patient_amount"] > 0
        ipn = await cashier.get(
            "/api/v1/payments/vnpay/ipn", params=vnpay_params(inv["number"], due, f"14{tag[:6]}")
        )
        assert ipn.json()["RspCode"] == "00", ipn.text
        paid = (await cashier.get(f"/api/v1/invoices/{inv['id']}")).json()
        assert paid["status"] == "paid" and paid["balance"] == 0 and paid["paid_amount"] == due

    # ... the doctor ends the visit; its QĐ130 claim exports, signed with the facility's certificate
    async with http_client(adm, token=issuer_for(adm).mint("user:bs.minh", ["doctor"])) as c:
        r = await c.post(f"/api/v1/visits/{visit['id']}/close")
        assert r.status_code == 200, r.text
    async with http_client(bil, "cashier") as cashier:
        # nobody re-keys the diagnosis at the cash desk: billing took the doctor's consultation from the
        # EMR (emr.diagnosis.recorded)
        async def exported() -> Any:
            r = await cashier.get(
                f"/api/v1/claims/{visit['id']}/xml130", params={"ma_bac_si": "003456/TB-CCHN"}
            )
            return r if r.status_code == 200 else None

        claim = await wait_for(exported, what="the QĐ130 claim of the closed visit")
    doc = claim.content
    validate(doc, strict=False)
    verify(doc, platform["cert"].read_bytes())
    root = etree.fromstring(doc)
    files = {
        f.findtext("LOAIHOSO"): base64.b64decode(f.findtext("NOIDUNGFILE")) for f in root.iter("FILEHOSO")
    }
    xml1 = etree.fromstring(files["XML1"])
    assert (
        xml1.findtext("HO_TEN") == "Nguyễn Thị Hồng Nhung"
        and xml1.findtext("MA_THE_BHYT") == PATIENT["bhyt_number"]
    )
    main = next(d for d in saved["diagnoses"] if d["main"])
    assert xml1.findtext("MA_BENH_CHINH") == "E11.9"
    assert xml1.findtext("CHAN_DOAN_RV") == main["name"] != ""
    secondary = [d["icd10_code"] for d in saved["diagnoses"] if not d["main"]]
    assert xml1.findtext("MA_BENH_KT") == ";".join(secondary)  # the consultation's secondary diagnoses
    (diag,) = await _rows(bil, select(visits.c.diagnosis_source).where(visits.c.id == visit["id"]))
    assert diag["diagnosis_source"] == "emr"
    assert int(xml1.findtext("T_BHTT")) == inv["insurance_amount"]

    # every chart read is in the EMR's audit trail
    trail = await _rows(
        emr,
        select(audit_log_table.c.action, audit_log_table.c.actor).where(
            audit_log_table.c.patient_id == patient["id"]
        ),
    )
    actions = {r["action"] for r in trail}
    doctor_reads = {r["action"] for r in trail if r["actor"] == "user:bs.minh"}
    assert {"encounter.list", "order.list", "result.list", "critical.list", "chart.read"} <= doctor_reads
    # ... and so is every read of the patient's data in the other services on the way
    for name, action, actor in (
        ("lab", "results.read", "user:"),  # the technician's
        ("lab", "order.read", "service:journey"),  # the gRPC reads above
        ("img", "imaging_study.read", "user:"),  # the radiographer's
        ("img", "imaging_order.read", "service:journey"),
        ("bil", "invoice.read", "user:"),  # the cashier's
        ("bil", "claim.export", "user:"),
    ):
        rows = await _rows(
            platform[name],
            select(audit_log_table.c.actor, audit_log_table.c.patient_id).where(
                audit_log_table.c.action == action
            ),
        )
        ours = [r for r in rows if r["patient_id"] in (patient["id"], patient["patient_code"])]
        assert ours and all(r["actor"].startswith(actor) for r in ours), (name, action, rows)
    assert {"consultation.save", "chart.read"} <= actions, actions

    # every hop happened once: each charge once, after every consumer has taken every event
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        for stream, durable in (
            ("ADMISSIONS", f"bil-adm-{tag}"),
            ("LAB", f"bil-lab-{tag}"),
            ("IMAGING", f"bil-img-{tag}"),
            ("EMR", f"bil-emr-{tag}"),
            ("ADMISSIONS", f"emr-adm-{tag}"),
            ("LAB", f"emr-lab-{tag}"),
            ("IMAGING", f"emr-img-{tag}"),
        ):
            await consumer_settled(js, stream, durable)
    finally:
        await nc.close()
    lines = await _rows(bil, select(charges.c.price_code).where(charges.c.visit_id == visit["id"]))
    assert sorted(r["price_code"] for r in lines) == codes
    (lab_row,) = await _rows(lab, select(lab_orders.c.id).where(lab_orders.c.visit_id == visit["id"]))
    assert lab_row["id"] == lab_order.id
    stored = await _rows(
        lab, select(lab_results.c.test_code).where(lab_results.c.barcode_received.in_(set(barcodes.values())))
    )
    assert sorted(r["test_code"] for r in stored) == sorted(res)  # the repeated message added nothing
    async with http_client(img, "radiographer") as radiographer:
        ordered = (await radiographer.get("/api/v1/orders")).json()["items"]
    assert [o["accession_number"] for o in ordered if o["patient_id"] == patient["patient_code"]] == [
        img_o["accession_number"]
    ]
    async with http_client(emr, token=doctor_token) as doctor:
        r = await doctor.get(f"/api/v1/patients/{patient['id']}/results", params={"encounter_id": enc["id"]})
        assert sorted(x["test_code"] for x in r.json()["results"]) == sorted(res)
        assert len(r.json()["studies"]) == 1
        encs = (await doctor.get("/api/v1/encounters", params={"patient_id": patient["id"]})).json()["items"]
        assert len(encs) == 1
        emr_orders = (await doctor.get(f"/api/v1/encounters/{enc['id']}/orders")).json()["items"]
        # the lab order has verified results for some of its tests (the rest still running): partial; the
        # X-ray's study arrived: resulted
        assert {o["kind"]: o["status"] for o in emr_orders} == {"lab": "partial", "imaging": "resulted"}
