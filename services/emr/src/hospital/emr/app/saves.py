"""The doctor's save: consultation, orders, prescription and note in one request and one transaction.

The screen used to make five requests in sequence (consultation, orders, prescription, note, sign), each its
own transaction: a refused prescription left the consultation and the orders saved, and each request paid
its own authentication, transaction, audit append and relay wake-up. Here every use case runs as before
(same checks, same events, same audit records) inside :meth:`Context.one_transaction`: everything is
committed together, or nothing is (ADR 0505)."""

from __future__ import annotations

from hospital.chassis.caller import Caller
from hospital.chassis.errors import Invalid
from hospital.emr.adapters.store import Prescriptions
from hospital.emr.app import schemas as sc
from hospital.emr.app.charts import ChartService
from hospital.emr.app.common import Context
from hospital.emr.app.documents import DocumentService
from hospital.emr.app.orders import OrderService
from hospital.emr.app.prescriptions import PrescriptionService, prescription_model


class ConsultationSaves:
    def __init__(
        self,
        ctx: Context,
        charts: ChartService,
        orders: OrderService,
        prescriptions: PrescriptionService,
        documents: DocumentService,
    ) -> None:
        self.ctx, self.charts, self.orders = ctx, charts, orders
        self.prescriptions, self.documents = prescriptions, documents

    async def save(
        self, caller: Caller, encounter_id: str, req: sc.SaveWholeConsultation
    ) -> sc.SavedConsultation:
        if req.sign_note and req.note is None:
            raise Invalid("save.sign_note", "không có phiếu để ký (note)", field="sign_note")
        if req.sign_prescription and req.prescription is None:
            raise Invalid("save.sign_prescription", "không có đơn thuốc để ký", field="sign_prescription")
        if req.note is not None and req.note.kind == "radiology_report":
            raise Invalid("save.note_kind", "kết quả CĐHA không lưu cùng phiếu khám", field="note.kind")
        async with self.ctx.one_transaction() as uow:
            consultation = await self.charts.save_consultation(caller, encounter_id, req.consultation)
            placed = None
            if req.orders is not None and (req.orders.lab or req.orders.imaging or req.orders.medication):
                placed = await self.orders.place(caller, encounter_id, req.orders)
            prescription = None
            if req.prescription is not None:
                prescription = await self.prescriptions.save(caller, encounter_id, req.prescription)
                if req.sign_prescription and prescription.status == "draft":
                    await self.documents.sign(caller, prescription.document_id)
                    row = await Prescriptions(uow.session).get(prescription.id)
                    prescription = prescription_model(row) if row else prescription
            note = None
            if req.note is not None:
                note = await self.documents.save(caller, encounter_id, req.note)
                if req.sign_note and note.status == "draft":
                    note = await self.documents.sign(caller, note.id)
            await uow.commit()
        if placed is not None:
            self.orders.wake.set()  # the dispatcher sends them now that they are committed
        return sc.SavedConsultation(
            consultation=consultation,
            orders=placed.orders if placed else [],
            prescription=prescription,
            note=note,
        )
