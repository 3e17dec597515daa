"""The imaging desk in Chromium against the real imaging service: the worklist filtered by modality, a CT
study whose accession number matches no order linked to the patient's order, an MPPS that matched no
order resolved with a note, and forwards waiting for a destination that is down, retried. Roles without
the desk are refused; axe finds nothing on the filled screen."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import grpc
import numpy as np
from playwright.async_api import expect
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import ModalityPerformedProcedureStep  # type: ignore[attr-defined]

from hospital.chassis.rpc import call_metadata
from hospital.contracts.imaging.v1 import imaging_pb2 as pb
from hospital.contracts.imaging.v1 import imaging_pb2_grpc as pb_grpc
from hospital.testing.services import http_client, issuer_for
from hospital.testing.waits import wait_for

from .conftest import csrf_of, http_sign_in, new_context, shot, sign_in
from .test_accessibility import axe

PATIENT_CODE = "BN-2026-004711"


def _ct(study: str, series: str, number: int) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyDate, ds.StudyTime = "20261207", "083000"
    ds.AccessionNumber = "CT-GO-NHAM"  # typed wrong on the modality: no order has it
    ds.Modality = "CT"
    ds.StudyDescription = "CT ngực không tiêm thuốc"
    ds.PatientName = "Quách^Thị Thanh Vân"
    ds.PatientID = PATIENT_CODE
    ds.PatientBirthDate = "19670915"
    ds.PatientSex = "F"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.SeriesNumber, ds.InstanceNumber = 1, number
    ds.ImagePositionPatient = [0.0, 0.0, 5.0 * number]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing, ds.SliceThickness = [0.5, 0.5], 5.0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows = ds.Columns = 16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.PixelData = (np.arange(256, dtype=np.uint16).reshape(16, 16) + number).tobytes()
    return ds


def _send_study(port: int) -> str:
    study, series = generate_uid(), generate_uid()
    ae = AE(ae_title="CT_KHOA_NOI")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="HOSPITAL_PACS")
    assert assoc.is_established
    try:
        for n in (1, 2):
            assert assoc.send_c_store(_ct(study, series, n)).Status == 0x0000
    finally:
        assoc.release()
    return study


def _send_mpps(port: int) -> str:
    ae = AE(ae_title="US_KHOA_SAN")
    ae.add_requested_context(ModalityPerformedProcedureStep)
    assoc = ae.associate("127.0.0.1", port, ae_title="HOSPITAL_PACS")
    assert assoc.is_established
    uid = generate_uid()
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ssa = Dataset()
    ssa.AccessionNumber = "US-KHONG-PHIEU"
    ssa.StudyInstanceUID = generate_uid()
    ds.ScheduledStepAttributesSequence = [ssa]
    ds.PatientName = "Khổng^Thị Bích Ngọc"
    ds.PatientID = "BN-2026-004799"
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.Modality = "US"
    try:
        created, _ = assoc.send_n_create(ds, ModalityPerformedProcedureStep, uid)
        assert created.Status == 0x0000
    finally:
        assoc.release()
    return uid


def _order(accession: str, modality: str, description: str) -> pb.ScheduleOrderRequest:
    req = pb.ScheduleOrderRequest(
        accession_number=accession,
        requested_procedure_id=f"{modality}-01",
        modality=modality,
        station_ae_title=f"{modality}_KHOA_NOI",
        requested_procedure_description=description,
        patient=pb.OrderPatient(
            patient_ref="0190a1b2-0000-7000-8000-000000004711",
            patient_code=PATIENT_CODE,
            full_name="Quách Thị Thanh Vân",
            birth_date="1967-09-15",
            sex="F",
        ),
        request_id=f"web-{accession}",
    )
    req.scheduled_start.FromDatetime(datetime.now(UTC) + timedelta(hours=1))
    return req


async def test_worklist_reconciliation_mpps_and_routing(imaging_stack, browser) -> None:
    svc = imaging_stack.imaging
    async with http_client(svc, role="admin") as admin:
        r = await admin.post(
            "/api/v1/routing/rules",
            json={"name": "Kho lưu trữ dài hạn", "destination_ae": "PACS_KHO", "modality": "CT"},
        )
        assert r.status_code == 201, r.text
    doctor = call_metadata(issuer_for(svc).mint_for_role("doctor"))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{svc.settings.grpc_port}") as ch:
        stub = pb_grpc.ImagingServiceStub(ch)
        ct = await stub.ScheduleOrder(_order("CT26120701", "CT", "CT ngực không tiêm thuốc"), metadata=doctor)
        await stub.ScheduleOrder(_order("US26120701", "US", "Siêu âm ổ bụng tổng quát"), metadata=doctor)
    study = await asyncio.to_thread(_send_study, svc.settings.dicom_port)
    mpps = await asyncio.to_thread(_send_mpps, svc.settings.dicom_port)

    async def all_there() -> bool:
        """The study queued for reconciliation, the MPPS flagged, and the forwards failed once."""
        async with http_client(svc, role="radiographer") as c:
            queue = (await c.get("/api/v1/routing/queue")).json()["waiting"]
            recon = (await c.get("/api/v1/reconciliation")).json()["items"]
            flagged = (await c.get("/api/v1/mpps", params={"unmatched": "true"})).json()["items"]
        failed = [w for w in queue if w["destination_ae"] == "PACS_KHO" and w["last_error"]]
        return (
            len(failed) == 2
            and [r["study_instance_uid"] for r in recon] == [study]
            and [m["mpps_instance_uid"] for m in flagged] == [mpps]
        )

    await wait_for(all_there, timeout=30)

    ctx = await new_context(browser)
    page = await ctx.new_page()
    await sign_in(page, imaging_stack.url, "radiographer")
    assert page.url.endswith("/imaging")
    worklist = page.locator("#worklist")
    await expect(worklist.locator("tr[data-accession='CT26120701']")).to_contain_text("Quách Thị Thanh Vân")
    await expect(worklist.locator("tr[data-accession='US26120701']")).to_contain_text("Chờ chụp")
    await page.select_option("#modality", "US")
    await expect(worklist.locator("tr[data-accession='CT26120701']")).to_have_count(0)
    await expect(worklist.locator("tr[data-accession='US26120701']")).to_be_visible()

    # the study from the CT matched no order: it waits in the reconciliation queue
    item = page.locator(f"#reconciliation .review-item[data-study='{study}']")
    await expect(item).to_contain_text("Quách Thị Thanh Vân")
    await expect(item).to_contain_text("Số phiếu không có trong hệ thống")
    # the MPPS from the ultrasound named no order either
    flagged = page.locator(f"#mpps .review-item[data-mpps='{mpps}']")
    await expect(flagged).to_contain_text("Không khớp phiếu chỉ định nào")
    await expect(flagged).to_contain_text("US_KHOA_SAN")
    # and the CT's images wait for the archive that does not answer
    dest = page.locator("#routing tr[data-destination='PACS_KHO']")
    await expect(dest).to_be_visible()
    await expect(page.locator("#routing .waiting")).to_contain_text("association")
    await shot(page, "40-imaging-desk")
    violations = await axe(page)
    assert violations == [], json.dumps(violations, ensure_ascii=False, indent=1)

    # linking without an order is refused next to the list; then the patient's CT order is chosen
    await item.locator("button[value=link]").click()
    item = page.locator(f"#reconciliation .review-item[data-study='{study}']")
    await expect(item.locator(".field-error")).to_contain_text("Hãy chọn phiếu chỉ định")
    await expect(item.locator("select")).to_be_focused()
    await shot(page, "41-imaging-reconcile-error")
    await item.locator("select").select_option(ct.id)
    await item.locator("button[value=link]").click()
    await expect(page.locator("#reconciliation .notice")).to_have_text("Đã gắn ca chụp với phiếu chỉ định.")
    await expect(page.locator(f"#reconciliation .review-item[data-study='{study}']")).to_have_count(0)
    async with http_client(svc, role="radiologist") as c:
        order = (await c.get("/api/v1/orders")).json()["items"]
        assert next(o for o in order if o["id"] == ct.id)["study_instance_uid"] == study
        resolved = (await c.get("/api/v1/reconciliation", params={"status": "resolved"})).json()["items"]
        assert [(r["study_instance_uid"], r["resolved_order_id"]) for r in resolved] == [(study, ct.id)]

    # the MPPS: a note is required, then it leaves the review list
    await flagged.locator("button[type=submit]").click()
    flagged = page.locator(f"#mpps .review-item[data-mpps='{mpps}']")
    await expect(flagged.locator(".field-error")).to_contain_text("Hãy ghi cách đã xử lý")
    await expect(flagged.locator("input[name=note]")).to_be_focused()
    await page.keyboard.type("Máy siêu âm chọn nhầm bệnh nhân; đã báo khoa Sản làm lại phiếu", delay=1)
    await page.keyboard.press("Enter")
    await expect(page.locator("#mpps .notice")).to_have_text("Đã ghi nhận cách xử lý báo cáo MPPS.")
    await expect(page.locator(f"#mpps .review-item[data-mpps='{mpps}']")).to_have_count(0)
    async with http_client(svc, role="radiologist") as c:
        assert (await c.get("/api/v1/mpps", params={"unmatched": "true"})).json()["items"] == []

    # retry the forwards now: the notice says how many were rescheduled
    await page.locator("#routing tr[data-destination='PACS_KHO'] button").click()
    await expect(page.locator("#routing .notice")).to_contain_text("PACS_KHO")
    await expect(page.locator("#routing .notice")).to_contain_text("Đã xếp 2 ảnh")
    await shot(page, "42-imaging-routing-retried")

    # English
    await page.goto(imaging_stack.url + "/language?to=en&next=/imaging")
    await expect(page.locator("#worklist-title")).to_have_text("Modality worklist")
    await expect(page.locator("#routing th").first).to_have_text("Destination (AE)")
    await ctx.close()


async def test_the_imaging_desk_is_refused_to_other_roles(imaging_stack) -> None:
    for role in ("doctor", "nurse", "lab_technician", "receptionist"):
        client = await http_sign_in(imaging_stack.url, role)
        try:
            home = await client.get("/home")
            assert 'href="/imaging"' not in home.text
            csrf = csrf_of(home.text)
            for method, path in (
                ("GET", "/imaging"),
                ("GET", "/imaging/reconciliation"),
                ("GET", "/imaging/mpps"),
                ("POST", "/imaging/routing/retry"),
                ("POST", "/imaging/mpps/1.2.3"),
            ):
                if method == "GET":
                    r = await client.get(path)
                else:
                    r = await client.post(path, data={"csrf_token": csrf, "destination": "PACS_KHO"})
                assert r.status_code == 403 and "Không có quyền truy cập" in r.text, (role, path)
        finally:
            await client.aclose()


async def test_each_panel_says_imaging_is_down_and_the_rest_works(web_without_backends, browser) -> None:
    """A web whose imaging does not answer: every panel says which service is not answering, the menu
    and sign-out still work."""
    ctx = await new_context(browser)
    page = await ctx.new_page()
    await sign_in(page, web_without_backends, "radiographer")
    for panel in ("#worklist", "#reconciliation", "#mpps", "#routing"):
        await expect(page.locator(f"{panel} .unavailable[data-service='imaging']")).to_contain_text(
            "Chẩn đoán hình ảnh"
        )
    await shot(page, "43-imaging-down")
    await page.click("nav.nav a[href='/home']")
    await page.wait_for_url("**/home")
    await ctx.close()
