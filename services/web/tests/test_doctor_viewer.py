"""The image viewer in Chromium: a CT ordered through the EMR arrives at imaging (STOW-RS, matched by its
accession number); the doctor opens it from the order on the chart, scrolls the series with the keyboard
and the wheel, changes the window with a preset, typed values and by dragging; every frame is a JPEG that
imaging renders (WADO-RS), fetched by the web's proxy route as the doctor (imaging audits each retrieval,
the web the viewing); a slice whose pixel data cannot be decoded shows a clear message."""

from __future__ import annotations

import json
import re
import uuid
from io import BytesIO

import numpy as np
from playwright.async_api import expect
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid
from sqlalchemy import select

from hospital.chassis.db import audit_log_table
from hospital.imaging.service import DEFINITION as IMAGING
from hospital.testing.servers import free_port
from hospital.testing.services import http_client, running_service
from hospital.testing.waits import wait_for

from .conftest import ARTIFACTS, new_context, shot, sign_in
from .patients import doctor_token, visit
from .test_accessibility import axe

SLICES = 12
BROKEN = 7  # this slice's JPEG bitstream is damaged inside a well-formed fragment


def ct_slice(patient: dict, accession: str, study: str, series: str, number: int) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = JPEGBaseline8Bit if number == BROKEN else ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyDate, ds.StudyTime = "20261207", "091500"
    ds.AccessionNumber = accession
    ds.Modality = "CT"
    ds.StudyDescription = "CT sọ não không tiêm thuốc"
    ds.SeriesDescription = "Sọ não 5mm"
    ds.PatientName = patient["full_name"].replace(" ", "^", 1)
    ds.PatientID = patient["patient_code"]
    ds.PatientSex = "F"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.SeriesNumber, ds.InstanceNumber = 2, number
    ds.ImagePositionPatient = [0.0, 0.0, 5.0 * number]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing, ds.SliceThickness = [0.5, 0.5], 5.0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows = ds.Columns = 128
    if number == BROKEN:
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit, ds.PixelRepresentation = 7, 0
        ds.PixelData = encapsulate([b"\xff\xd8\xff\xdb" + b"\x00\x13garbage-not-a-jpeg" + b"\xff\xd9\x00"])
    else:
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        y, x = np.mgrid[0:128, 0:128]
        r = np.hypot(x - 64, y - 64)
        # a skull-like ring (bone) around brain tissue, the ring thickening slice by slice
        hu = np.where(r < 40, 35 + number, np.where(r < 46 + number // 3, 900, -1000))
        ds.PixelData = (hu + 1024).clip(0, 4095).astype(np.uint16).tobytes()
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def multipart(parts: list[bytes]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        b"".join(
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p + b"\r\n" for p in parts
        )
        + f"--{boundary}--\r\n".encode()
    )
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


async def test_open_scroll_and_window_a_ct_series(stack, browser, s3_server, tmp_path) -> None:
    """Imaging runs at the address the stack's web knows, for this test."""
    async with running_service(
        IMAGING,
        data_dir=stack.web.settings.data_dir,  # the same development token issuer as the web
        database_url=f"sqlite+aiosqlite:///{tmp_path}/imaging.db",
        nats_url=stack.web.settings.nats_url,
        grpc_port=stack.imaging_port,
        http_port=stack.imaging_http_port,
        s3_endpoint=s3_server.endpoint,
        s3_access_key=s3_server.access_key,
        s3_secret_key=s3_server.secret_key,
        dicom_host="127.0.0.1",
        dicom_port=free_port(),
        study_quiet_seconds=0.5,  # a study is announced (imaging.study.received) soon after it arrives
        shutdown_grace_seconds=2,
    ) as imaging:
        enc_id, study = await _viewer_journey(stack, browser, imaging)

    # imaging stopped: the viewer still opens (the chart is the EMR's) and says which service is down
    ctx = await new_context(browser)
    page = await ctx.new_page()
    await sign_in(page, stack.url, "doctor")
    await page.goto(f"{stack.url}/doctor/encounters/{enc_id}/studies/{study}")
    await expect(page.locator(".unavailable[data-service='imaging']")).to_contain_text("Chẩn đoán hình ảnh")
    await expect(page.locator("#back-to-chart")).to_be_visible()
    await expect(page.locator(".series-list .empty")).to_have_count(0)  # not "no series": unknown
    await shot(page, "36-viewer-imaging-down")
    await ctx.close()


async def _viewer_journey(stack, browser, imaging) -> tuple[str, str]:
    room = "P112"
    v = await visit(stack, "Lục Thị Phương Thảo", room, "1972-08-30", "female")
    enc_id, patient = v["encounter_id"], v["patient"]
    async with http_client(stack.emr, token=doctor_token(stack)) as emr:
        r = await emr.post(
            f"/api/v1/encounters/{enc_id}/orders",
            json={
                "imaging": [
                    {"procedure_code": "CT-SN", "description": "CT sọ não không tiêm thuốc", "modality": "CT"}
                ],
                "request_id": f"ct-{enc_id}",
            },
        )
        assert r.status_code == 201, r.text
        order = r.json()["orders"][0]
    study, series = generate_uid(), generate_uid()
    body, ctype = multipart(
        [ct_slice(patient, order["accession_number"], study, series, n) for n in range(1, SLICES + 1)]
    )
    async with http_client(imaging, "radiographer") as modality:
        r = await modality.post("/dicomweb/studies", content=body, headers={"Content-Type": ctype})
        assert r.status_code == 200, r.text
    async with http_client(stack.emr, token=doctor_token(stack)) as emr:

        async def arrived() -> bool:
            r = await emr.get(f"/api/v1/patients/{patient['id']}/results", params={"encounter_id": enc_id})
            return [s["study_instance_uid"] for s in r.json().get("studies", [])] == [study]

        await wait_for(arrived, what="the EMR has the study (imaging.study.received, by accession number)")

    ctx = await new_context(browser)
    page = await ctx.new_page()
    await sign_in(page, stack.url, "doctor")
    await page.select_option("#room", room)
    await page.locator("#queue .queue-item").filter(has_text="Lục Thị Phương Thảo").click()
    link = page.locator(f"#orders .order[data-kind='imaging'] [data-study='{study}'] a")
    await expect(link).to_have_text("Xem ảnh")
    await link.click()
    await page.wait_for_url(f"**/doctor/encounters/{enc_id}/studies/{study}")

    async def reached() -> bool:  # the web's channel to imaging reconnects by itself (backoff ≤ 2 s)
        if await page.locator("#viewer").count():
            return True
        await page.reload()
        return False

    await wait_for(reached, interval=0.5, what="the viewer reaches imaging")
    viewer = page.locator("#viewer")
    status = page.locator("#viewer-status")
    await expect(viewer).to_have_attribute("data-shown", "1")
    await expect(status).to_have_text(f"Lát 1/{SLICES} · Cửa sổ C 40 / W 400")
    assert await page.locator("#frame").evaluate("img => img.naturalWidth") > 0
    await shot(page, "30-viewer-ct")
    assert await axe(page) == []

    # keyboard on the image, then the wheel
    await page.focus("#viewport")
    await page.keyboard.press("ArrowDown")
    await expect(viewer).to_have_attribute("data-shown", "2")
    await page.keyboard.press("ArrowDown")
    await expect(viewer).to_have_attribute("data-shown", "3")
    await page.hover("#viewport")
    await page.mouse.wheel(0, 120)
    await expect(viewer).to_have_attribute("data-shown", "4")
    await page.mouse.wheel(0, -120)
    await expect(viewer).to_have_attribute("data-shown", "3")
    await expect(page.locator("#slice")).to_have_value("3")

    # window/level: a preset, typed values, a drag on the image
    await page.click("[data-preset='bone']")
    await expect(status).to_have_text(f"Lát 3/{SLICES} · Cửa sổ C 400 / W 1800")
    await expect(page.locator("#frame")).to_have_attribute("data-url", _window_re(400, 1800))
    await shot(page, "31-viewer-bone-window")
    await page.fill("#wc", "abc")
    await page.press("#wc", "Enter")
    await expect(page.locator("#window-error")).to_contain_text("Cửa sổ không hợp lệ")
    await expect(page.locator("#wc")).to_have_attribute("aria-invalid", "true")
    await page.fill("#wc", "50")
    await page.fill("#ww", "120")
    await page.press("#ww", "Enter")
    await expect(status).to_have_text(f"Lát 3/{SLICES} · Cửa sổ C 50 / W 120")
    await expect(viewer).to_have_attribute("data-shown", "3")
    box = await page.locator("#viewport").bounding_box()
    assert box
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    await page.mouse.move(cx, cy)
    await page.mouse.down()
    await page.mouse.move(cx + 50, cy + 20, steps=5)
    await page.mouse.up()
    # the image shown is the one of the window the inputs show, after the last move
    await page.wait_for_function(
        """() => {
            const wc = document.getElementById('wc').value, ww = document.getElementById('ww').value;
            return ww !== '120' && (document.getElementById('frame').dataset.url || '').endsWith(
                'window=' + wc + ',' + ww);
        }"""
    )
    wc, ww = int(await page.input_value("#wc")), int(await page.input_value("#ww"))
    assert ww > 120 and wc > 50, (wc, ww)  # right: wider; down: higher centre

    # the damaged slice: a clear message instead of a picture; the next slice shows again
    await page.focus("#viewport")
    for _ in range(BROKEN - 3):
        await page.keyboard.press("ArrowDown")
    await expect(viewer).to_have_attribute("data-failed", str(BROKEN))
    await expect(page.locator("#frame-error")).to_contain_text(f"Không hiển thị được lát {BROKEN}")
    await expect(page.locator("#frame")).to_be_hidden()
    await shot(page, "32-viewer-frame-failed")
    await page.keyboard.press("End")
    await expect(viewer).to_have_attribute("data-shown", str(SLICES))
    await expect(page.locator("#frame-error")).to_have_text("")
    # how long a rendered frame took through the web (browser's resource timing), kept with the screenshots
    durations = sorted(
        await page.evaluate(
            "() => performance.getEntriesByType('resource')"
            ".filter(e => e.name.includes('/rendered')).map(e => e.duration)"
        )
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "viewer-frame-timings.json").write_text(
        json.dumps(
            {
                "frames": len(durations),
                "p50_ms": round(durations[len(durations) // 2], 1),
                "max_ms": round(durations[-1], 1),
            }
        )
    )
    await ctx.close()

    # the web recorded the viewing; imaging every rendered frame, as the doctor
    async with stack.web.rt.db.session() as s:
        views = (
            await s.execute(
                select(audit_log_table.c.actor, audit_log_table.c.patient_id).where(
                    audit_log_table.c.action == "imaging_study.view", audit_log_table.c.resource_id == study
                )
            )
        ).all()
    assert [tuple(r) for r in views] == [("user:doctor", patient["id"])]

    async def rendered_as_doctor() -> bool:
        async with imaging.rt.db.session() as s:
            rows = (
                await s.execute(
                    select(audit_log_table.c.actor, audit_log_table.c.detail).where(
                        audit_log_table.c.action == "imaging_study.retrieve",
                        audit_log_table.c.resource_id == study,
                    )
                )
            ).all()
        details = [(r.actor, json.loads(r.detail) if isinstance(r.detail, str) else r.detail) for r in rows]
        return (
            sum(1 for actor, d in details if actor == "user:doctor" and d.get("what") == "rendered") >= SLICES
        )

    await wait_for(rendered_as_doctor, what="imaging audited the rendered frames as the doctor")
    return enc_id, study


def _window_re(wc: int, ww: int) -> re.Pattern[str]:
    return re.compile(rf".*window={wc},{ww}$")
