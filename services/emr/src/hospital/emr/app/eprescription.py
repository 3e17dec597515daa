"""National e-prescription (đơn thuốc quốc gia): every signed prescription is queued in the transaction
that signs it (``queue_national``, called by the document signing) and sent by a worker with retries and a
doubling delay; its status (queued, sent, failed, attempts, last error) is kept on the queue row and
mirrored on the prescription.

Delivery is idempotent on ``ma_don_thuoc``: one queue row per prescription (unique code), one sender per row
at a time (a lease), and an answer "this code is already known" after a lost answer counts as delivered."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hospital.chassis.aio import wait_any
from hospital.chassis.caller import Caller
from hospital.chassis.db import utcnow
from hospital.chassis.errors import Conflict, NotFound
from hospital.chassis.ids import new_id
from hospital.chassis.security import Principal
from hospital.emr.adapters.eprescription import (
    Delivered,
    EPrescriptionQueue,
    NationalPrescriptionClient,
    NationalRefused,
    NationalTransient,
)
from hospital.emr.adapters.store import Consultations, Encounters, Patients, Prescriptions
from hospital.emr.app import schemas as sc
from hospital.emr.app.common import LOCAL_TZ, Context, authorize_read, load_encounter
from hospital.emr.domain import access

log = logging.getLogger("hospital.emr.eprescription")

# Sex as the national system codes it (it differs from XML130's 1 male / 2 female) [unconfirmed].
NATIONAL_SEX = {"female": 1, "male": 2}
NATIONAL_SEX_UNKNOWN = 3


def _dmy(value: str | date | None) -> str:
    """dd/mm/yyyy for a full date; a partial birth date (yyyy-mm or yyyy) keeps the parts known."""
    if value is None or value == "":
        return ""
    text = value.isoformat() if isinstance(value, date) else str(value)
    return "/".join(reversed(text.split("-")))


def _quantity(text: str) -> int | float:
    try:
        q = Decimal(str(text).replace(",", ".").strip() or "0")
    except InvalidOperation:
        return 0
    return int(q) if q == q.to_integral_value() else float(q)


def usage_text(item: dict[str, Any]) -> str:
    """cách dùng: route, dose x frequency, duration, then the instructions (Vietnamese)."""
    head = ", ".join(
        p
        for p in (
            (item.get("route") or "").capitalize(),
            " x ".join(p for p in (item.get("dose") or "", item.get("frequency") or "") if p),
            f"{item['duration_days']} ngày" if item.get("duration_days") else "",
        )
        if p
    )
    tail = (item.get("instructions") or "").strip()
    return ". ".join(p for p in (head, tail) if p)


def national_payload(
    prescription: dict[str, Any],
    patient: dict[str, Any],
    encounter: dict[str, Any],
    weight_kg: float | None,
    facility_code: str,
    final_at: datetime,
) -> dict[str, Any]:
    """The prescription in the national system's shape (field names of QĐ 808/QĐ-BYT)."""
    items = prescription["items"]
    return {
        "loai_don_thuoc": prescription["type"],
        "ma_don_thuoc": prescription["code"],
        "ma_co_so_kham_chua_benh": facility_code,
        "ho_ten_benh_nhan": patient.get("full_name") or "",
        "ngay_sinh_benh_nhan": _dmy(patient.get("birth_date")),
        "gioi_tinh": NATIONAL_SEX.get(patient.get("sex") or "", NATIONAL_SEX_UNKNOWN),
        "ma_so_the_bao_hiem_y_te": encounter.get("insurance_card_number")
        or patient.get("insurance_card_number")
        or "",
        "ma_benh_nhan": patient.get("patient_code") or "",
        "can_nang": weight_kg if weight_kg is not None else "",
        "chan_doan": [
            {"ma_chan_doan": d["icd10_code"], "ten_chan_doan": d["name"]}
            for d in sorted(prescription["diagnoses"], key=lambda d: not d.get("main"))
        ],
        "thong_tin_don_thuoc": [
            {
                "ma_thuoc": i["drug_code"],
                "biet_duoc": i.get("drug_name") or "",
                "ten_thuoc": " ".join(p for p in (i.get("active_ingredient"), i.get("strength")) if p),
                "don_vi_tinh": i.get("unit") or "",
                "so_luong": _quantity(i.get("quantity") or "0"),
                "cach_dung": usage_text(i),
            }
            for i in items
        ],
        "loi_dan": prescription.get("advice") or "",
        "ngay_tai_kham": _dmy(prescription.get("revisit_date")),
        "ho_ten_bac_si": prescription.get("prescriber_name") or "",
        "ngay_gio_ke_don": final_at.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M:%S"),
    }


async def queue_national(
    session: AsyncSession, prescription_id: str, facility_code: str, now: datetime
) -> dict[str, Any]:
    """Queue a prescription that has just become final, in the caller's transaction. Idempotent: a
    prescription already queued keeps its row (and its payload as it was when it became final)."""
    queue = EPrescriptionQueue(session)
    existing = await queue.of_prescription(prescription_id)
    if existing is not None:
        return existing
    rx = await Prescriptions(session).get(prescription_id)
    if rx is None:
        raise NotFound(
            "prescription.not_found", f"no prescription {prescription_id}", field="prescription_id"
        )
    enc = await Encounters(session).get(rx["encounter_id"]) or {}
    patient = await Patients(session).get(rx["patient_id"]) or {"id": rx["patient_id"]}
    consultation = await Consultations(session).get(rx["encounter_id"]) or {}
    weight = (consultation.get("vitals") or {}).get("weight_kg")
    row = {
        "id": new_id(),
        "prescription_id": prescription_id,
        "code": rx["code"],
        "payload": national_payload(rx, patient, enc, weight, facility_code, now),
        "status": "queued",
        "attempts": 0,
        "next_attempt_at": now,
        "last_error": None,
        "response": None,
        "created_at": now,
        "sent_at": None,
    }
    await queue.add(row)
    await Prescriptions(session).update(
        prescription_id, national_status="queued", national_error=None, national_next_at=now
    )
    return row


def status_model(row: dict[str, Any]) -> sc.NationalStatus:
    return sc.NationalStatus(
        prescription_id=row["prescription_id"],
        code=row["code"],
        status=row["status"],
        attempts=row["attempts"],
        last_error=row["last_error"] or "",
        next_attempt_at=row["next_attempt_at"] if row["status"] == "queued" else None,
        sent_at=row["sent_at"],
        payload=row["payload"],
        response=row["response"],
    )


class EPrescriptionService:
    """A prescription's national status, and resending one that failed."""

    def __init__(self, ctx: Context, wake: asyncio.Event) -> None:
        self.ctx, self.wake = ctx, wake

    async def status(self, caller: Caller, prescription_id: str, reason: str | None) -> sc.NationalStatus:
        async with self.ctx.uow() as uow:
            rx = await Prescriptions(uow.session).get(prescription_id)
            if rx is None:
                raise NotFound(
                    "prescription.not_found", f"no prescription {prescription_id}", field="prescription_id"
                )
            await authorize_read(
                self.ctx,
                uow,
                caller,
                rx["patient_id"],
                rx["encounter_id"],
                reason,
                "prescription.national.read",
            )
            row = await EPrescriptionQueue(uow.session).of_prescription(prescription_id)
            if row is None:
                raise NotFound(
                    "prescription.not_queued",
                    f"đơn {rx['code']} chưa ký ({rx['status']}): chưa gửi đơn thuốc quốc gia",
                    field="prescription_id",
                )
            await uow.commit()
        return status_model(row)

    async def resend(self, caller: Caller, prescription_id: str) -> sc.NationalStatus:
        """Put a failed prescription back in the queue (after the cause was fixed)."""
        async with self.ctx.uow() as uow:
            s = uow.session
            rx = await Prescriptions(s).get(prescription_id)
            row = await EPrescriptionQueue(s).of_prescription(prescription_id) if rx else None
            if rx is None or row is None:
                raise NotFound(
                    "prescription.not_queued",
                    f"no queued prescription {prescription_id}",
                    field="prescription_id",
                )
            enc = await load_encounter(s, rx["encounter_id"])
            access.check_write(caller.principal, self.ctx.departments(caller), enc["department_code"])
            if row["status"] != "failed":
                raise Conflict(
                    "prescription.national_not_failed",
                    f"đơn {rx['code']} đang ở trạng thái {row['status']}: chỉ gửi lại đơn bị lỗi",
                    field="prescription_id",
                )
            now = utcnow()
            await EPrescriptionQueue(s).update(row["id"], status="queued", next_attempt_at=now)
            await Prescriptions(s).update(prescription_id, national_status="queued", national_next_at=now)
            uow.audit(
                caller.audit(
                    "prescription.national.resend", "Prescription", prescription_id, rx["patient_id"]
                )
            )
            out = status_model({**row, "status": "queued", "next_attempt_at": now})
            await uow.commit()
        self.wake.set()
        return out


def _service_caller() -> Caller:
    return Caller(
        principal=Principal(subject="service:emr", name="emr", roles=frozenset({"service"})),
        source="emr-eprescription",
    )


class EPrescriptionSender:
    """Worker: sends due queue rows to the national system, one at a time per row (lease)."""

    def __init__(
        self,
        ctx: Context,
        wake: asyncio.Event,
        client_factory: Callable[[], NationalPrescriptionClient] | None = None,
    ) -> None:
        self.ctx, self.wake = ctx, wake
        st = ctx.settings
        self.client_factory = client_factory or (
            lambda: NationalPrescriptionClient(
                st.eprescription_url,
                st.eprescription_username,
                st.eprescription_password,
                st.eprescription_timeout_seconds,
            )
        )
        self.client: NationalPrescriptionClient | None = None
        self.lease = timedelta(seconds=max(30.0, st.eprescription_timeout_seconds * 3))

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                busy = False
                if self.ctx.settings.eprescription_url:
                    try:
                        busy = await self.run_once()
                    except Exception:
                        log.exception("e-prescription round failed")
                if busy:
                    continue
                self.wake.clear()
                await wait_any(self.wake, stop, timeout=self.ctx.settings.eprescription_poll_seconds)
        finally:
            if self.client is not None:
                await self.client.close()

    async def run_once(self) -> bool:
        now = utcnow()
        async with self.ctx.rt.db.session() as s:
            due = await EPrescriptionQueue(s).due(now, 50)
        sent = False
        for entry in due:
            async with self.ctx.rt.db.session() as s:
                claimed = await EPrescriptionQueue(s).claim(
                    entry["id"], entry["next_attempt_at"], now + self.lease
                )
                await s.commit()
            if not claimed:
                continue
            sent = True
            await self._send(entry)
        return sent

    async def _send(self, entry: dict[str, Any]) -> None:
        if self.client is None:
            self.client = self.client_factory()
        outcome: Delivered | NationalRefused | NationalTransient
        try:
            outcome = await self.client.send(entry["payload"])
        except (NationalRefused, NationalTransient) as exc:
            outcome = exc
        except Exception as exc:  # a bug or an unexpected answer: keep the row queued, say why
            log.exception("sending prescription %s failed", entry["code"])
            outcome = NationalTransient(f"{type(exc).__name__}: {exc}")
        await self._settle(entry, outcome)

    async def _settle(
        self, entry: dict[str, Any], outcome: Delivered | NationalRefused | NationalTransient
    ) -> None:
        st = self.ctx.settings
        now = utcnow()
        attempts = entry["attempts"] + 1
        async with self.ctx.uow() as uow:
            s = uow.session
            queue, rx = EPrescriptionQueue(s), Prescriptions(s)
            q: dict[str, Any] = {"attempts": attempts}
            p: dict[str, Any] = {"national_attempts": attempts}
            if isinstance(outcome, Delivered):
                note = "đã có trên hệ thống quốc gia (lần gửi trước đã đến)" if outcome.duplicate else None
                q.update(status="sent", sent_at=now, last_error=note, response=outcome.answer)
                p.update(
                    national_status="sent", national_sent_at=now, national_error=None, national_next_at=None
                )
                action = "prescription.national.sent"
            elif isinstance(outcome, NationalRefused) or attempts >= st.eprescription_max_attempts:
                q.update(status="failed", last_error=str(outcome))
                p.update(national_status="failed", national_error=str(outcome), national_next_at=None)
                action = "prescription.national.failed"
            else:
                delay = min(
                    st.eprescription_retry_base_seconds * 2 ** (attempts - 1),
                    st.eprescription_retry_max_seconds,
                )
                nxt = now + timedelta(seconds=delay)
                q.update(last_error=str(outcome), next_attempt_at=nxt)
                p.update(national_status="queued", national_error=str(outcome), national_next_at=nxt)
                action = ""
            await queue.update(entry["id"], **q)
            await rx.update(entry["prescription_id"], **p)
            if action:
                patient_id = (await rx.get(entry["prescription_id"]) or {}).get("patient_id")
                uow.audit(
                    _service_caller().audit(
                        action,
                        "Prescription",
                        entry["prescription_id"],
                        patient_id,
                        code=entry["code"],
                        attempts=attempts,
                        error=q.get("last_error"),
                    )
                )
            await uow.commit()
