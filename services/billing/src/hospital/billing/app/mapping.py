"""Rows → API dictionaries and protobuf messages."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from hospital.billing.app.common import quantity_text
from hospital.billing.domain.insurance import LineSplit
from hospital.contracts.billing.v1 import billing_pb2 as pb


def charge_dict(r: Any, split: LineSplit | None = None) -> dict[str, Any]:
    out = {
        "id": r["id"],
        "visit_id": r["visit_id"],
        "invoice_id": r["invoice_id"],
        "patient_id": r["patient_id"],
        "price_code": r["price_code"],
        "name": r["name"],
        "category": r["category"],
        "unit": r["unit"],
        "quantity": quantity_text(r["qty_milli"]),
        "hospital_unit_price": r["hospital_unit_price"],
        "insurance_unit_price": r["insurance_unit_price"],
        "covered": r["covered"],
        "payment_ratio": r["payment_ratio"],
        "bhyt_code": r["bhyt_code"],
        "xml_group": r["xml_group"],
        "department_code": r["department_code"],
        "bed_code": r["bed_code"],
        "ordered_by": r["ordered_by"],
        "service_at": r["service_at"].isoformat(),
        "source": r["source"],
        "source_event_id": r["source_event_id"],
        "reverses_charge_id": r["reverses_charge_id"],
        "status": r["status"],
        "note": r["note"],
        "posted_by": r["posted_by"],
    }
    if split is not None:
        out["split"] = {
            "thanh_tien_bv": split.thanh_tien_bv,
            "thanh_tien_bh": split.thanh_tien_bh,
            "muc_huong": split.muc_huong,
            "t_bhtt": split.t_bhtt,
            "t_bncct": split.t_bncct,
            "t_bntt": split.t_bntt,
        }
    return out


def whole_vnd(price: Decimal | int) -> int:
    """A unit price in whole VND (half-up) for the integer fields; the exact one travels as text."""
    return int(Decimal(price).to_integral_value(ROUND_HALF_UP))


def charge_proto(c: dict[str, Any]) -> pb.Charge:
    msg = pb.Charge(
        id=c["id"],
        visit_id=c["visit_id"],
        patient_id=c["patient_id"],
        price_code=c["price_code"],
        name=c["name"],
        category=c["category"],
        quantity=quantity_text(c["qty_milli"]) if "qty_milli" in c else c["quantity"],
        hospital_unit_price=whole_vnd(c["hospital_unit_price"]),
        insurance_unit_price=whole_vnd(c["insurance_unit_price"]),
        hospital_unit_price_exact=str(c["hospital_unit_price"]),
        insurance_unit_price_exact=str(c["insurance_unit_price"]),
        covered=c["covered"],
        source=c["source"],
        source_event_id=c.get("source_event_id") or "",
        reverses_charge_id=c.get("reverses_charge_id") or "",
        status=c["status"],
    )
    from datetime import datetime

    at = c["service_at"]
    msg.service_at.FromDatetime(at if isinstance(at, datetime) else datetime.fromisoformat(at))
    return msg


def invoice_proto(inv: dict[str, Any]) -> pb.Invoice:
    from datetime import datetime

    msg = pb.Invoice(
        id=inv["id"],
        number=inv["number"],
        visit_id=inv["visit_id"],
        patient_id=inv["patient_id"],
        status=inv["status"],
        total_amount=inv["total_amount"],
        insurance_amount=inv["insurance_amount"],
        patient_amount=inv["patient_amount"],
        paid_amount=inv["paid_amount"],
        balance=inv["balance"],
    )
    for line in inv.get("lines", []):
        s = line.get("split") or {}
        msg.lines.append(
            pb.InvoiceLine(
                charge=charge_proto(line),
                thanh_tien_bv=s.get("thanh_tien_bv", 0),
                thanh_tien_bh=s.get("thanh_tien_bh", 0),
                muc_huong=int(Decimal(s.get("muc_huong", 0)).to_integral_value(ROUND_HALF_UP)),
                muc_huong_exact=str(s.get("muc_huong", 0)),
                t_bhtt=s.get("t_bhtt", 0),
                t_bncct=s.get("t_bncct", 0),
                t_bntt=s.get("t_bntt", 0),
            )
        )
    if inv.get("issued_at"):
        msg.issued_at.FromDatetime(datetime.fromisoformat(inv["issued_at"]))
    visit = inv.get("visit") or {}
    msg.patient_name = visit.get("patient_name") or ""
    msg.patient_code = visit.get("patient_code") or ""
    msg.insurance_card_number = visit.get("card_number") or ""
    msg.visit_code = visit.get("visit_code") or ""
    return msg
