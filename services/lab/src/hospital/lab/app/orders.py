"""Orders and specimens: place (gRPC, HTTP, HL7 OML^O21), cancel, read, collect, receive, labels.

One specimen per tube type; each gets a barcode from a per-day counter (``next_value``) in the order's
own transaction: ``<prefix>YYMMDD`` + 5-digit sequence + a Luhn check digit, e.g. ``250706000127``.
Placing is idempotent on ``request_id`` and on the HIS's ``placer_order_number``.
"""

from __future__ import annotations

import asyncio
import io
import logging
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hospital.chassis.app import Runtime
from hospital.chassis.db import next_value, utcnow
from hospital.chassis.errors import Conflict, Invalid, NotFound
from hospital.chassis.fields import clean_text
from hospital.chassis.ids import new_id
from hospital.chassis.uow import UnitOfWork
from hospital.contracts.lab.v1 import events_pb2
from hospital.contracts.lab.v1 import lab_pb2 as pb
from hospital.lab.adapters.tables import order_items, orders, specimens
from hospital.lab.app.catalogue import Catalogue, TestDef
from hospital.lab.app.common import PRIORITY_PB, SEX_PB, Caller, iso, ts
from hospital.lab.config import LabSettings

log = logging.getLogger(__name__)
LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def luhn_digit(digits: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2 == 0:
            n *= 2
            n = n - 9 if n > 9 else n
        total += n
    return str((10 - total % 10) % 10)


def parse_birth(text: str | None) -> tuple[date | None, str | None]:
    if not text:
        return None, None
    t = text.strip()
    try:
        if len(t) == 4:
            y = int(t)
            d = date(y, 7, 1)
        elif len(t) == 8 and t.isdigit():
            d = date(int(t[:4]), int(t[4:6]), int(t[6:]))
            t = d.isoformat()
        else:
            d = date.fromisoformat(t)
    except ValueError:
        raise Invalid(
            "order.birth_date", "birth_date must be YYYY-MM-DD or YYYY", field="patient.birth_date"
        ) from None
    if d.year < 1900 or d > date.today():
        raise Invalid("order.birth_date", "birth_date is out of range", field="patient.birth_date")
    return d, t


@dataclass
class NewOrder:
    patient_id: str
    patient_name: str
    patient_sex: str
    tests: list[str]
    patient_code: str | None = None
    birth_date: str | None = None
    priority: str = "routine"
    visit_id: str | None = None
    ordering_doctor: str | None = None
    placer_order_number: str | None = None
    request_id: str | None = None
    clinical_note: str | None = None
    barcode: str | None = None
    specimen_barcodes: dict[str, str] = field(default_factory=dict)  # tube → pre-printed barcode
    one_specimen: bool = False  # HL7: the HIS labelled one tube (SPM-2) for all of the order's tests
    patient_check: str = "unverified"  # set by OrderService.check_patient (ADR 0103)


@dataclass(frozen=True, slots=True)
class PatientCheck:
    """``verified``: admissions knows the patient; ``unknown``: admissions answered that it does not;
    ``unverified``: admissions could not be asked (down, slow, refused the lab's credentials)."""

    status: Literal["verified", "unknown", "unverified"]
    patient_id: str = ""
    patient_code: str = ""
    full_name: str = ""
    reason: str = ""


class PatientDirectory(Protocol):
    """Where patients are registered (admissions, over gRPC: ``adapters.admissions``)."""

    async def check(self, patient_id: str, patient_code: str | None = None) -> PatientCheck: ...


class OrderService:
    def __init__(
        self, rt: Runtime[LabSettings], catalogue: Catalogue, patients: PatientDirectory | None = None
    ) -> None:
        self.rt = rt
        self.cat = catalogue
        self.patients = patients

    # --- the patient ----------------------------------------------------------------------------------
    async def check_patient(self, o: NewOrder) -> None:
        """Ask admissions whether the order's patient is registered, before any transaction: an unknown
        patient refuses the order (nothing written); when admissions cannot be asked the order is taken as
        ``unverified`` and :meth:`recheck_patients` asks again later, so the lab never stops for it."""
        if self.patients is None:
            return
        found = await self.patients.check(o.patient_id, o.patient_code)
        if found.status == "unknown":
            raise NotFound(
                "order.patient_unknown",
                f"patient {o.patient_id[:40]!r} is not registered in admissions: register the patient first",
                field="patient.id",
            )
        o.patient_check = found.status
        if found.status == "verified" and not o.patient_code:
            o.patient_code = found.patient_code or None

    async def recheck_patients(self, stop: asyncio.Event) -> None:
        """Worker: every ``patient_recheck_seconds``, check the patients of ``unverified`` orders again;
        one admissions does not know is marked ``unknown`` and reported (error log, alert tag)."""
        every = self.rt.settings.patient_recheck_seconds
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), every)
                return
            except TimeoutError:
                pass
            try:
                await self.recheck_once()
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                log.warning("patient re-check failed: %s", exc)

    async def recheck_once(self, limit: int = 200) -> dict[str, int]:
        """One round of :meth:`recheck_patients`; returns how many orders became verified / unknown."""
        if self.patients is None:
            return {}
        async with self.rt.db.session() as s:
            rows = (
                await s.execute(
                    select(orders.c.id, orders.c.patient_id, orders.c.patient_code)
                    .where(orders.c.patient_check == "unverified")
                    .order_by(orders.c.ordered_at)
                    .limit(limit)
                )
            ).all()
        outcome: dict[str, int] = {}
        checked: dict[tuple[str, str | None], str] = {}
        for order_id, patient_id, code in rows:
            key = (patient_id, code)
            if key not in checked:
                checked[key] = (await self.patients.check(patient_id, code)).status
            status = checked[key]
            if status == "unverified":
                continue  # admissions still unreachable: next round
            async with self.rt.uow() as uow:
                await uow.session.execute(
                    update(orders)
                    .where(orders.c.id == order_id, orders.c.patient_check == "unverified")
                    .values(patient_check=status)
                )
                await uow.commit()
            outcome[status] = outcome.get(status, 0) + 1
            if status == "unknown":
                log.error(
                    "lab order %s names patient %r, whom admissions does not know",
                    order_id,
                    patient_id,
                    extra={"alert": "lab_order_unknown_patient", "order_id": order_id},
                )
        return outcome

    # --- placing --------------------------------------------------------------------------------------
    def validate(self, o: NewOrder) -> tuple[list[TestDef], date | None, str | None]:
        if not o.patient_id or len(o.patient_id) > 36:
            raise Invalid(
                "order.patient_id", "patient.id is required (at most 36 characters)", field="patient.id"
            )
        if not o.patient_name or not o.patient_name.strip():
            raise Invalid("order.patient_name", "patient.full_name is required", field="patient.full_name")
        for name, code, value, limit, multiline in (  # bounded and clean, as over HTTP (gRPC, HL7 callers)
            ("patient.full_name", "order.patient_name", o.patient_name, 200, False),
            ("patient.patient_code", "order.patient_code", o.patient_code, 30, False),
            ("ordering_doctor", "order.ordering_doctor", o.ordering_doctor, 200, False),
            ("placer_order_number", "order.placer_order_number", o.placer_order_number, 60, False),
            ("request_id", "order.request_id", o.request_id, 100, False),
            ("clinical_note", "order.clinical_note", o.clinical_note, 2000, True),
        ):
            if value:
                clean_text(value, field=name, max_length=limit, error_code=code, multiline=multiline)
        if o.patient_sex not in ("male", "female", "unknown"):
            raise Invalid(
                "order.patient_sex", "patient.sex must be male, female or unknown", field="patient.sex"
            )
        if o.priority not in ("routine", "stat"):
            raise Invalid("order.priority", "priority must be routine or stat", field="priority")
        if o.barcode is not None and not (1 <= len(o.barcode.strip()) <= 40):
            raise Invalid("order.barcode", "barcode must be 1 to 40 characters", field="barcode")
        tests = self.cat.expand(o.tests)
        if o.barcode and not o.one_specimen and len({t.tube for t in tests}) > 1:
            raise Invalid(
                "order.barcode",
                f"a pre-printed barcode fits one tube; these tests need {len({t.tube for t in tests})} tubes",
                field="barcode",
            )
        birth, birth_text = parse_birth(o.birth_date)
        return tests, birth, birth_text

    async def place(self, o: NewOrder, caller: Caller, source: str = "http") -> dict[str, Any]:
        tests, birth, birth_text = self.validate(o)
        await self.check_patient(o)
        async with self.rt.uow() as uow:
            existing = await self._existing(uow.session, o)
            if existing is not None:
                return await self._load(uow.session, existing)
            order_id = await self.create(uow, o, tests, birth, birth_text, caller, source)
            await uow.commit()
            return await self._load(uow.session, order_id)

    async def _existing(self, s: AsyncSession, o: NewOrder) -> str | None:
        for col, value in (
            (orders.c.request_id, o.request_id),
            (orders.c.placer_order_number, o.placer_order_number),
        ):
            if value:
                found = (await s.execute(select(orders.c.id).where(col == value))).scalar()
                if found:
                    return str(found)
        return None

    async def create(
        self,
        uow: UnitOfWork,
        o: NewOrder,
        tests: list[TestDef],
        birth: date | None,
        birth_text: str | None,
        caller: Caller,
        source: str,
    ) -> str:
        s = uow.session
        now = utcnow()
        day = now.astimezone(LOCAL_TZ).date()
        order_id = new_id()
        seq = await next_value(s, f"lab_order:{day.isoformat()}")
        await s.execute(
            orders.insert().values(
                id=order_id,
                order_number=f"XN{day:%y%m%d}{seq:04d}",
                patient_id=o.patient_id,
                patient_code=o.patient_code,
                patient_name=o.patient_name.strip(),
                patient_sex=o.patient_sex,
                birth_date=birth,
                birth_date_text=birth_text,
                visit_id=o.visit_id,
                ordering_doctor=o.ordering_doctor,
                placer_order_number=o.placer_order_number or None,
                request_id=o.request_id or None,
                priority=o.priority,
                status="active",
                source=source,
                clinical_note=o.clinical_note,
                ordered_at=now,
                patient_check=o.patient_check,
            )
        )
        by_tube: dict[str, list[TestDef]] = {}
        for t in tests:
            by_tube.setdefault(tests[0].tube if o.one_specimen else t.tube, []).append(t)
        for tube, group in by_tube.items():
            barcode = (o.barcode or o.specimen_barcodes.get(tube) or "").strip()
            if barcode:
                taken = (
                    await s.execute(select(specimens.c.id).where(specimens.c.barcode == barcode))
                ).first()
                if taken:
                    raise Conflict(
                        "specimen.barcode_taken",
                        f"barcode {barcode} is already used by another specimen",
                        field="barcode",
                    )
            else:
                n = await next_value(s, f"barcode:{day.isoformat()}")
                stem = f"{day:%y%m%d}{n:05d}"
                barcode = f"{self.rt.settings.barcode_prefix}{stem}{luhn_digit(stem)}"
            sid = new_id()
            await s.execute(
                specimens.insert().values(
                    id=sid,
                    order_id=order_id,
                    barcode=barcode,
                    specimen_type=group[0].specimen_type,
                    tube=tube,
                    status="ordered",
                )
            )
            await s.execute(
                order_items.insert(),
                [
                    {
                        "id": new_id(),
                        "order_id": order_id,
                        "specimen_id": sid,
                        "test_code": t.code,
                        "status": "ordered",
                    }
                    for t in group
                ],
            )
        order = await self._load(s, order_id)
        uow.publish(
            "lab.order.received",
            events_pb2.OrderReceived(order=order_proto(order), by=caller.actor(), source=source),
        )
        uow.audit(
            caller.audit(
                "order.place",
                "LabOrder",
                order_id,
                o.patient_id,
                source=source,
                tests=[t.code for t in tests],
            )
        )
        return order_id

    # --- reading --------------------------------------------------------------------------------------
    async def _load(self, s: AsyncSession, order_id: str) -> dict[str, Any]:
        o = (await s.execute(select(orders).where(orders.c.id == order_id))).mappings().first()
        if o is None:
            raise NotFound("order.not_found", f"no lab order {order_id}")
        sp = (
            (
                await s.execute(
                    select(specimens).where(specimens.c.order_id == order_id).order_by(specimens.c.barcode)
                )
            )
            .mappings()
            .all()
        )
        items = (
            (await s.execute(select(order_items).where(order_items.c.order_id == order_id))).mappings().all()
        )
        barcode_of = {x["id"]: x["barcode"] for x in sp}
        name = {c: t.name_vi for c, t in self.cat.tests.items()}
        return {
            "id": o["id"],
            "order_number": o["order_number"],
            "status": o["status"],
            "priority": o["priority"],
            "patient": {
                "check": o["patient_check"],
                "id": o["patient_id"],
                "patient_code": o["patient_code"],
                "full_name": o["patient_name"],
                "sex": o["patient_sex"],
                "birth_date": o["birth_date_text"],
            },
            "visit_id": o["visit_id"],
            "ordering_doctor": o["ordering_doctor"],
            "placer_order_number": o["placer_order_number"],
            "ordered_at": iso(o["ordered_at"]),
            "cancel_reason": o["cancel_reason"],
            "clinical_note": o["clinical_note"],
            "items": [
                {
                    "test_code": i["test_code"],
                    "test_name": name.get(i["test_code"], i["test_code"]),
                    "specimen_barcode": barcode_of[i["specimen_id"]],
                    "status": i["status"],
                }
                for i in items
            ],
            "specimens": [
                {
                    "id": x["id"],
                    "barcode": x["barcode"],
                    "specimen_type": x["specimen_type"],
                    "tube": x["tube"],
                    "status": x["status"],
                    "collected_at": iso(x["collected_at"]),
                    "received_at": iso(x["received_at"]),
                    "tests": [i["test_code"] for i in items if i["specimen_id"] == x["id"]],
                }
                for x in sp
            ],
        }

    async def order_id_for_barcode(self, s: AsyncSession, barcode: str) -> str:
        oid = (await s.execute(select(specimens.c.order_id).where(specimens.c.barcode == barcode))).scalar()
        if oid is None:
            raise NotFound("specimen.not_found", f"no specimen with barcode {barcode}")
        return str(oid)

    async def get(self, order_id: str | None, caller: Caller, barcode: str | None = None) -> dict[str, Any]:
        async with self.rt.uow() as uow:
            if not order_id:
                if not barcode:
                    raise Invalid("order.id", "give an order id or a barcode", field="order_id")
                order_id = await self.order_id_for_barcode(uow.session, barcode)
            order = await self._load(uow.session, order_id)
            uow.audit(caller.audit("order.read", "LabOrder", order_id, order["patient"]["id"]))
            await uow.commit()
        return order

    # --- state changes --------------------------------------------------------------------------------
    async def cancel(self, order_id: str, reason: str, caller: Caller) -> dict[str, Any]:
        if not reason or not reason.strip():
            raise Invalid("order.cancel_reason", "a cancellation reason is required", field="reason")
        async with self.rt.uow() as uow:
            order = await self.cancel_in(uow, order_id, reason, caller)
            await uow.commit()
        return order

    async def cancel_in(self, uow: UnitOfWork, order_id: str, reason: str, caller: Caller) -> dict[str, Any]:
        """Cancel an order with its specimens and items inside ``uow`` (a cancelled order is returned as
        is)."""
        s = uow.session
        order = await self._load(s, order_id)
        if order["status"] == "cancelled":
            return order
        if any(i["status"] in ("resulted", "verified") for i in order["items"]):
            raise Conflict("order.has_results", "the order already has results; it cannot be cancelled")
        now = utcnow()
        await s.execute(
            update(orders)
            .where(orders.c.id == order_id)
            .values(status="cancelled", cancelled_at=now, cancel_reason=reason.strip())
        )
        await s.execute(update(specimens).where(specimens.c.order_id == order_id).values(status="cancelled"))
        await s.execute(
            update(order_items).where(order_items.c.order_id == order_id).values(status="cancelled")
        )
        order = await self._load(s, order_id)
        uow.publish(
            "lab.order.cancelled",
            events_pb2.OrderCancelled(order=order_proto(order), by=caller.actor(), reason=reason.strip()),
        )
        uow.audit(caller.audit("order.cancel", "LabOrder", order_id, order["patient"]["id"], reason=reason))
        return order

    async def find_for_cancel(self, s: AsyncSession, placer: str, filler: str) -> str:
        """The order an OML^O21 cancellation names: by placer order number (ORC-2), else by our order
        number given back as the filler order number (ORC-3)."""
        for col, value in ((orders.c.placer_order_number, placer), (orders.c.order_number, filler)):
            if value:
                found = (await s.execute(select(orders.c.id).where(col == value))).scalar()
                if found:
                    return str(found)
        raise NotFound(
            "order.not_found",
            f"no lab order with placer order number {placer!r}"
            + (f" or order number {filler!r}" if filler else ""),
        )

    async def specimen_step(self, barcode: str, step: str, caller: Caller) -> dict[str, Any]:
        """``collect`` (ordered → collected) or ``receive`` (collected/ordered → received in the lab)."""
        allowed = {"collect": ("ordered",), "receive": ("ordered", "collected")}[step]
        target = {"collect": "collected", "receive": "received"}[step]
        async with self.rt.uow() as uow:
            s = uow.session
            row = (
                (await s.execute(select(specimens).where(specimens.c.barcode == barcode))).mappings().first()
            )
            if row is None:
                raise NotFound("specimen.not_found", f"no specimen with barcode {barcode}")
            if row["status"] == target:
                return await self._specimen(s, row["id"])
            if row["status"] not in allowed:
                raise Conflict(
                    f"specimen.{row['status']}", f"specimen {barcode} is {row['status']}; cannot {step}"
                )
            now = utcnow()
            values: dict[str, Any] = {"status": target}
            if step == "collect" or row["collected_at"] is None:
                values.update(collected_at=now, collected_by=caller.subject)
            if step == "receive":
                values.update(received_at=now, received_by=caller.subject)
            await s.execute(update(specimens).where(specimens.c.id == row["id"]).values(**values))
            spec = await self._specimen(s, row["id"])
            patient_id = (
                await s.execute(select(orders.c.patient_id).where(orders.c.id == row["order_id"]))
            ).scalar()
            msg = specimen_proto(spec)
            if step == "collect":
                uow.publish(
                    "lab.specimen.collected",
                    events_pb2.SpecimenCollected(
                        order_id=row["order_id"], specimen=msg, patient_id=patient_id, by=caller.actor()
                    ),
                )
            else:
                uow.publish(
                    "lab.specimen.received",
                    events_pb2.SpecimenReceived(
                        order_id=row["order_id"], specimen=msg, patient_id=patient_id, by=caller.actor()
                    ),
                )
            uow.audit(caller.audit(f"specimen.{step}", "Specimen", row["id"], patient_id, barcode=barcode))
            await uow.commit()
        return spec

    async def _specimen(self, s: AsyncSession, sid: str) -> dict[str, Any]:
        x = (await s.execute(select(specimens).where(specimens.c.id == sid))).mappings().one()
        tests = (
            await s.execute(select(order_items.c.test_code).where(order_items.c.specimen_id == sid))
        ).scalars()
        return {
            "id": x["id"],
            "order_id": x["order_id"],
            "barcode": x["barcode"],
            "specimen_type": x["specimen_type"],
            "tube": x["tube"],
            "status": x["status"],
            "collected_at": iso(x["collected_at"]),
            "received_at": iso(x["received_at"]),
            "tests": list(tests),
        }

    async def label_png(self, barcode: str, caller: Caller) -> bytes:
        """A 50 × 25 mm tube label (Code 128, 300 dpi): barcode, patient, tests, tube."""
        async with self.rt.uow() as uow:
            s = uow.session
            row = (
                (await s.execute(select(specimens).where(specimens.c.barcode == barcode))).mappings().first()
            )
            if row is None:
                raise NotFound("specimen.not_found", f"no specimen with barcode {barcode}")
            o = (await s.execute(select(orders).where(orders.c.id == row["order_id"]))).mappings().one()
            tests = list(
                (
                    await s.execute(
                        select(order_items.c.test_code).where(order_items.c.specimen_id == row["id"])
                    )
                ).scalars()
            )
            uow.audit(caller.audit("specimen.label", "Specimen", row["id"], o["patient_id"], barcode=barcode))
            await uow.commit()
        return render_label(
            barcode,
            o["patient_name"],
            o["patient_code"] or "",
            o["birth_date_text"] or "",
            o["patient_sex"],
            tests,
            row["tube"],
            o["priority"] == "stat",
        )


def render_label(
    barcode: str, name: str, code: str, birth: str, sex: str, tests: list[str], tube: str, stat: bool
) -> bytes:
    from barcode import Code128
    from barcode.writer import ImageWriter
    from PIL import Image, ImageDraw, ImageFont

    width, height = 590, 295  # 50 × 25 mm at 300 dpi
    img = Image.new("RGB", (width, height), "white")
    buf = io.BytesIO()
    Code128(barcode, writer=ImageWriter()).write(
        buf,
        options={
            "module_height": 9.0,
            "module_width": 0.25,
            "quiet_zone": 1.0,
            "font_size": 0,
            "dpi": 300,
            "write_text": False,
        },
    )
    bars = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    bars.thumbnail((width - 20, 130))
    img.paste(bars, ((width - bars.width) // 2, 8))
    draw = ImageDraw.Draw(img)
    font = ImageFont.truetype(str(FONT), 26) if FONT.exists() else ImageFont.load_default()
    small = ImageFont.truetype(str(FONT), 22) if FONT.exists() else ImageFont.load_default()
    sex_vi = {"male": "Nam", "female": "Nữ"}.get(sex, "")
    draw.text((12, 142), barcode + ("   CẤP CỨU" if stat else ""), fill="black", font=font)
    draw.text((12, 176), f"{name}  {sex_vi} {birth[:4]}".strip(), fill="black", font=font)
    draw.text((12, 210), f"{code}  {tube}", fill="black", font=small)
    draw.text((12, 242), ", ".join(tests)[:48], fill="black", font=small)
    out = io.BytesIO()
    img.save(out, format="PNG", dpi=(300, 300))
    return out.getvalue()


def specimen_proto(x: dict[str, Any]) -> pb.Specimen:
    from datetime import datetime

    m = pb.Specimen(
        id=x["id"],
        barcode=x["barcode"],
        specimen_type=x["specimen_type"],
        tube=x["tube"],
        status=x["status"],
        tests=x["tests"],
    )
    if x["collected_at"]:
        m.collected_at.CopyFrom(ts(datetime.fromisoformat(x["collected_at"])))
    if x["received_at"]:
        m.received_at.CopyFrom(ts(datetime.fromisoformat(x["received_at"])))
    return m


def order_proto(o: dict[str, Any]) -> pb.Order:
    from datetime import datetime

    p = o["patient"]
    m = pb.Order(
        id=o["id"],
        order_number=o["order_number"],
        status=o["status"],
        priority=PRIORITY_PB.get(o["priority"], pb.PRIORITY_UNSPECIFIED),
        patient=pb.PatientRef(
            id=p["id"],
            patient_code=p["patient_code"] or "",
            full_name=p["full_name"],
            sex=SEX_PB.get(p["sex"], pb.SEX_UNSPECIFIED),
            birth_date=p["birth_date"] or "",
        ),
        visit_id=o["visit_id"] or "",
        ordering_doctor=o["ordering_doctor"] or "",
        placer_order_number=o["placer_order_number"] or "",
        cancel_reason=o["cancel_reason"] or "",
        items=[pb.OrderItem(**i) for i in o["items"]],
        specimens=[specimen_proto(x) for x in o["specimens"]],
    )
    m.ordered_at.CopyFrom(ts(datetime.fromisoformat(o["ordered_at"])))
    return m
