"""National e-prescription: a signed prescription is queued in the signing transaction and delivered by the
worker to a stand-in of the national system (a real HTTP server on a free loopback port) that checks the
payload's shape and the facility's token, fails (HTTP 500), times out and recovers; each prescription is
delivered exactly once; its status (queued / sent / failed, attempts, last error) shows over HTTP and gRPC."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
import uvicorn
from emr_testkit import Admissions, Grpc, client, eventually, token, wait_encounter
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from conftest import durables
from hospital.chassis.app import Service
from hospital.contracts.emr.v1 import emr_pb2 as pb
from hospital.emr.service import DEFINITION
from hospital.testing.servers import free_port
from hospital.testing.services import running_service

USER, PASSWORD = "35001_BVDK", "mat-khau-lien-thong-35001"
DATE = r"^\d{2}/\d{2}/\d{4}$"


class ChanDoan(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ma_chan_doan: str = Field(pattern=r"^[A-Z]\d{2}(\.\d{1,2})?$")
    ten_chan_doan: str = Field(min_length=1)


class Thuoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ma_thuoc: str = Field(min_length=1)
    biet_duoc: str
    ten_thuoc: str = Field(min_length=1)
    don_vi_tinh: str = Field(min_length=1)
    so_luong: int | float = Field(gt=0)
    cach_dung: str = Field(min_length=1)


class DonThuoc(BaseModel):
    """The national system's prescription document, as the stand-in checks it."""

    model_config = ConfigDict(extra="forbid")
    loai_don_thuoc: Literal["c", "n", "h", "y"]
    ma_don_thuoc: str = Field(pattern=r"^[A-Z0-9]{5}[0-9]{7}-[cnhy]$", min_length=14, max_length=14)
    ma_co_so_kham_chua_benh: str = Field(min_length=5, max_length=5)
    ho_ten_benh_nhan: str = Field(min_length=1)
    ngay_sinh_benh_nhan: str = Field(pattern=DATE)
    gioi_tinh: Literal[1, 2, 3]
    ma_so_the_bao_hiem_y_te: str
    ma_benh_nhan: str
    can_nang: float | Literal[""]
    chan_doan: list[ChanDoan] = Field(min_length=1)
    thong_tin_don_thuoc: list[Thuoc] = Field(min_length=1)
    loi_dan: str
    ngay_tai_kham: str = Field(pattern=r"^(\d{2}/\d{2}/\d{4})?$")
    ho_ten_bac_si: str = Field(min_length=1)
    ngay_gio_ke_don: str = Field(pattern=r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


@dataclass
class StandIn:
    """The national e-prescription system: login, then gui-don-thuoc; scripted failures per call."""

    port: int
    script: list[str] = field(default_factory=list)  # per send: "500", "hang", "store_hang", "refuse"
    stored: dict[str, dict[str, Any]] = field(default_factory=dict)  # ma_don_thuoc → document
    calls: list[tuple[str, str]] = field(default_factory=list)  # (ma_don_thuoc, what happened)
    shape_errors: list[str] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    logins: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> FastAPI:
        app = FastAPI()
        token = "tok-35001"

        @app.post("/api/auth/dang-nhap-co-so-kham-chua-benh")
        async def login(body: dict[str, Any]) -> JSONResponse:
            self.logins += 1
            if body.get("ma_lien_thong_co_so_kham_chua_benh") != USER or body.get("password") != PASSWORD:
                return JSONResponse({"message": "Sai thông tin đăng nhập"}, status_code=401)
            return JSONResponse({"token": token, "token_type": "bearer"})

        @app.post("/api/v1/gui-don-thuoc")
        async def send(request: Request, authorization: str = Header("")) -> JSONResponse:
            if authorization != f"Bearer {token}":
                return JSONResponse({"message": "Unauthorized"}, status_code=401)
            body = await request.json()
            code = str(body.get("ma_don_thuoc", ""))
            step = self.script.pop(0) if self.script else "ok"
            try:
                DonThuoc.model_validate(body)
            except ValidationError as exc:
                self.shape_errors.append(str(exc))
                self.calls.append((code, "422"))
                errors = [{"truong": ".".join(map(str, e["loc"])), "loi": e["msg"]} for e in exc.errors()]
                return JSONResponse({"danh_sach_cac_loi": errors}, status_code=422)
            if step == "500":
                self.calls.append((code, "500"))
                return JSONResponse({"message": "Lỗi hệ thống"}, status_code=500)
            if step == "hang":  # slower than the client's timeout, nothing stored
                self.calls.append((code, "hang"))
                await self.release.wait()
                return JSONResponse({"message": "late"}, status_code=504)
            if step == "refuse":
                self.calls.append((code, "refuse"))
                return JSONResponse(
                    {"danh_sach_cac_loi": [{"truong": "ma_so_the_bao_hiem_y_te", "loi": "Thẻ BHYT hết hạn"}]},
                    status_code=422,
                )
            if code in self.stored:
                self.calls.append((code, "duplicate"))
                return JSONResponse(
                    {"danh_sach_cac_loi": [{"truong": "ma_don_thuoc", "loi": "ma_don_thuoc đã tồn tại"}]},
                    status_code=409,
                )
            self.stored[code] = body
            if step == "store_hang":  # stored, but the answer never reaches the caller in time
                self.calls.append((code, "store_hang"))
                await self.release.wait()
                return JSONResponse({"success": "late"})
            self.calls.append((code, "ok"))
            return JSONResponse({"success": "Gửi đơn thuốc thành công", "checksum": f"ck-{code}"})

        return app


@pytest.fixture
async def national() -> AsyncIterator[StandIn]:
    stand_in = StandIn(port=free_port())
    server = uvicorn.Server(
        uvicorn.Config(
            stand_in.app(), host="127.0.0.1", port=stand_in.port, log_level="warning", lifespan="off"
        )
    )
    task = asyncio.create_task(server.serve())
    await eventually(lambda: _true(server.started), timeout=10)
    try:
        yield stand_in
    finally:
        stand_in.release.set()
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)


async def _true(value: bool) -> bool:
    return value


@pytest.fixture
async def emr_rx(database_url: str, nats_server, tmp_path, national: StandIn) -> AsyncIterator[Service]:
    async with running_service(
        DEFINITION,
        data_dir=tmp_path,
        database_url=database_url,
        nats_url=nats_server.url,
        shutdown_grace_seconds=2,
        eprescription_url=national.url,
        eprescription_username=USER,
        eprescription_password=PASSWORD,
        eprescription_timeout_seconds=2.0,  # only the scripted hangs run into it, even on a busy machine
        eprescription_retry_base_seconds=0.05,
        eprescription_retry_max_seconds=0.2,
        eprescription_poll_seconds=0.1,
        **durables(),
    ) as svc:
        yield svc


PARA = {
    "drug_code": "PARA500",
    "dose": "1 viên",
    "frequency": "khi sốt > 38,5°C",
    "duration_days": 3,
    "quantity": "10",
    "instructions": "Cách nhau ít nhất 4 giờ",
}
OME = {
    "drug_code": "OME20",
    "dose": "1 viên",
    "frequency": "1 lần/ngày",
    "duration_days": 14,
    "quantity": "14",
}


async def _draft(svc: Service, admissions: Admissions, name: str, items: list[dict], request_id: str) -> dict:
    _, patient = await admissions.open_visit(patient=admissions.patient(name))
    enc = (await wait_encounter(svc, patient.id))[0]
    async with client(svc) as doctor:
        r = await doctor.put(
            f"/api/v1/encounters/{enc['id']}/consultation",
            json={
                "chief_complaint": "Sốt, đau thượng vị",
                "vitals": {"weight_kg": 54.5, "height_cm": 158},
                "diagnoses": [
                    {"icd10_code": "K29.7", "main": False},
                    {"icd10_code": "J02.9", "main": True},
                ],
            },
        )
        assert r.status_code == 200, r.text
        r = await doctor.post(
            f"/api/v1/encounters/{enc['id']}/prescriptions",
            json={
                "items": items,
                "advice": "Ăn nhẹ, uống nhiều nước",
                "revisit_date": "2026-12-21",
                "request_id": request_id,
            },
        )
        assert r.status_code == 201, r.text
    return r.json()


async def _sign(svc: Service, rx: dict) -> Any:
    async with client(svc) as doctor:
        return await doctor.post(f"/api/v1/documents/{rx['document_id']}/sign")


async def _status(svc: Service, rx_id: str, want: str) -> dict:
    async with client(svc) as doctor:

        async def check() -> Any:
            r = await doctor.get(f"/api/v1/prescriptions/{rx_id}/national")
            assert r.status_code == 200, r.text
            return r.json() if r.json()["status"] == want else None

        return await eventually(check)


async def test_failing_then_recovering_national_system_gets_each_prescription_once(
    emr_rx: Service, admissions: Admissions, national: StandIn
) -> None:
    # first prescription: HTTP 500, then stored but answered too late (timeout), then the retry learns
    # the code is known (delivered, not sent twice); second one: a timeout with nothing stored, then OK
    national.script += ["500", "store_hang"]
    first = await _draft(emr_rx, admissions, "Trần Văn Đức", [PARA, OME], "rx-national-1")
    async with client(emr_rx) as doctor:
        before = await doctor.get(f"/api/v1/prescriptions/{first['id']}/national")
        signed = await doctor.post(f"/api/v1/documents/{first['document_id']}/sign")
        assert signed.status_code == 200, signed.text
        again = await doctor.post(f"/api/v1/documents/{first['document_id']}/sign")
        edit = await doctor.post(
            f"/api/v1/encounters/{first['encounter_id']}/prescriptions",
            json={"prescription_id": first["id"], "items": [PARA]},
        )
    assert before.status_code == 404 and before.json()["code"] == "prescription.not_queued"
    assert again.status_code == 409  # signed once, queued once
    assert edit.status_code == 409 and edit.json()["code"] == "prescription.signed"

    done = await _status(emr_rx, first["id"], "sent")
    assert done["attempts"] == 3, done
    assert [c for c in national.calls if c[0] == first["code"]] == [
        (first["code"], "500"),
        (first["code"], "store_hang"),
        (first["code"], "duplicate"),
    ]
    assert "đã có trên hệ thống quốc gia" in done["last_error"]

    national.script += ["hang"]
    second = await _draft(emr_rx, admissions, "Phạm Thị Thu Hà", [OME], "rx-national-2")
    assert (await _sign(emr_rx, second)).status_code == 200
    done2 = await _status(emr_rx, second["id"], "sent")
    assert done2["attempts"] == 2 and done2["last_error"] == ""
    assert done2["response"]["checksum"] == f"ck-{second['code']}"

    # exactly once each, in the documented shape
    assert national.shape_errors == []
    assert set(national.stored) == {first["code"], second["code"]}
    doc = national.stored[first["code"]]
    assert re.fullmatch(r"35001\d{7}-c", doc["ma_don_thuoc"]) and doc["loai_don_thuoc"] == "c"
    assert doc["ho_ten_benh_nhan"] == "Trần Văn Đức" and doc["ngay_sinh_benh_nhan"] == "14/03/1972"
    assert doc["gioi_tinh"] == 1 and doc["ma_so_the_bao_hiem_y_te"] == "HT3350123456789"
    assert doc["can_nang"] == 54.5
    assert doc["chan_doan"][0]["ma_chan_doan"] == "J02.9"  # the main diagnosis first
    assert [d["ma_chan_doan"] for d in doc["chan_doan"]] == ["J02.9", "K29.7"]
    para = doc["thong_tin_don_thuoc"][0]
    assert para == {
        "ma_thuoc": "PARA500",
        "biet_duoc": "Paracetamol 500mg",
        "ten_thuoc": "Paracetamol 500mg",
        "don_vi_tinh": "viên",
        "so_luong": 10,
        "cach_dung": "Uống, 1 viên x khi sốt > 38,5°C, 3 ngày. Cách nhau ít nhất 4 giờ",
    }
    assert doc["loi_dan"] == "Ăn nhẹ, uống nhiều nước" and doc["ngay_tai_kham"] == "21/12/2026"
    assert doc["ho_ten_bac_si"] == "BS. Lê Quang Minh"

    # the status on the prescription itself, over gRPC (the same request id returns the stored prescription)
    async with Grpc(emr_rx, token(emr_rx)) as g:
        rx = await g.stub.SavePrescription(
            pb.SavePrescriptionRequest(
                encounter_id=first["encounter_id"],
                request_id="rx-national-1",
                items=[pb.PrescriptionItem(drug_code="PARA500")],
            ),
            metadata=g.md,
        )
    assert rx.status == "signed" and rx.national_status == "sent" and rx.national_attempts == 3
    assert rx.HasField("national_sent_at") and not rx.HasField("national_next_at")


async def test_a_refused_prescription_is_failed_with_the_reason_and_can_be_resent(
    emr_rx: Service, admissions: Admissions, national: StandIn
) -> None:
    national.script += ["refuse"]
    draft = await _draft(emr_rx, admissions, "Lê Thị Mỹ Dung", [PARA], "rx-national-3")
    assert (await _sign(emr_rx, draft)).status_code == 200
    async with client(emr_rx) as doctor:
        failed = await _status(emr_rx, draft["id"], "failed")
        not_failed = await doctor.post(f"/api/v1/prescriptions/{draft['id']}/national/resend")
        assert not_failed.status_code == 200  # it was failed: queued again
        sent = await _status(emr_rx, draft["id"], "sent")
        twice = await doctor.post(f"/api/v1/prescriptions/{draft['id']}/national/resend")
    assert failed["attempts"] == 1
    assert "HTTP 422" in failed["last_error"] and "Thẻ BHYT hết hạn" in failed["last_error"]
    assert sent["attempts"] == 2 and list(national.stored) == [draft["code"]]
    assert twice.status_code == 409 and twice.json()["code"] == "prescription.national_not_failed"


async def test_status_reads_are_checked_and_only_doctors_resend(
    emr_rx: Service, admissions: Admissions, national: StandIn
) -> None:
    national.script += ["refuse"]
    draft = await _draft(emr_rx, admissions, "Võ Minh Khang", [PARA], "rx-national-4")
    assert (await _sign(emr_rx, draft)).status_code == 200
    await _status(emr_rx, draft["id"], "failed")
    async with client(emr_rx, "nurse") as nurse:
        read = await nurse.get(f"/api/v1/prescriptions/{draft['id']}/national")
        by_nurse = await nurse.post(f"/api/v1/prescriptions/{draft['id']}/national/resend")
    assert read.status_code == 200 and read.json()["status"] == "failed"
    assert by_nurse.status_code == 403
    outsider = dict(subject="user:bs.tuan", name="BS. Đỗ Anh Tuấn", departments=["NGO"])
    async with client(emr_rx, **outsider) as c:
        refused = await c.get(f"/api/v1/prescriptions/{draft['id']}/national")
        allowed = await c.get(
            f"/api/v1/prescriptions/{draft['id']}/national",
            params={"break_glass_reason": "Bệnh nhân chuyển khoa cấp cứu"},
        )
        resend = await c.post(f"/api/v1/prescriptions/{draft['id']}/national/resend")
    assert refused.status_code == 403 and refused.json()["code"] == "chart.break_glass_required"
    assert allowed.status_code == 200 and allowed.json()["status"] == "failed"
    assert resend.status_code == 403  # resending is for the department's doctors
    assert national.stored == {}
