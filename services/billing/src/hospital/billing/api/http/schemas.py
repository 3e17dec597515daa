"""The HTTP API's request and response models. Requests: every text field is bounded and cleaned (chassis
``fields``). Responses: the JSON the API has always answered (the cash desk, the web front end and
integrators parse these names). Amounts are whole VND; ``muc_huong`` may be a fraction (47.5)."""

from __future__ import annotations

import datetime as dt
from datetime import date
from typing import Literal

from pydantic import BaseModel, Field

from hospital.chassis.fields import Id, Money, code, line, text
from hospital.chassis.responses import Instant, Number, Out


class ChargeIn(BaseModel):
    price_code: code(30, min_length=1) = Field(..., examples=["XN-CTM"])
    quantity: code(20) | None = Field(
        None, description="decimal, at most 3 places; default 1", examples=["2"]
    )
    note: text(500) | None = None
    ordered_by: code(50) | None = Field(
        None, description="ordering doctor's practising licence (MA_BAC_SI)", examples=["003456/TB-CCHN"]
    )
    request_id: code(100) | None = Field(None, description="idempotency key")


class CancelIn(BaseModel):
    reason: text(500, min_length=1)


class PaymentIn(BaseModel):
    amount: Money = Field(..., description="whole VND", gt=0)
    method: Literal["cash", "card"] = "cash"
    request_id: code(100) | None = None


class RefundIn(BaseModel):
    amount: Money = Field(..., gt=0)
    method: Literal["cash", "bank_transfer"] = "cash"
    reason: text(500, min_length=1)
    request_id: code(100) | None = Field(None, description="idempotency key")


class VietQrIn(BaseModel):
    amount: Money | None = Field(None, gt=0, description="default: the balance due; give one for a deposit")


class ShiftOpenIn(BaseModel):
    opening_float: Money = Field(0, description="whole VND in the drawer at the start")


class ShiftCloseIn(BaseModel):
    counted_cash: Money = Field(..., description="whole VND counted at the end")


class MatchIn(BaseModel):
    invoice_id: Id


class ResolveIn(BaseModel):
    action: Literal["accept", "refund"] = Field(
        ..., description="accept: a payment of the amount received; refund: the money goes back to the payer"
    )
    reason: text(500, min_length=1)
    refund_reference: code(100) | None = Field(None, description="the provider's refund reference")


IcdCode = code(10, min_length=1)
DiagnosisText = line(500)  # feeds the claim XML: one line, no control characters


class DiagnosisIn(BaseModel):
    code: IcdCode = Field(..., examples=["K80.2"])
    text: DiagnosisText = Field("", examples=["Sỏi túi mật"], description="one line, no control characters")


class CardIn(BaseModel):
    number: code(15, min_length=15) = Field(..., examples=["HT3350120878811"], description="BHYT card number")
    valid_from: date = Field(..., description="first day the card is valid (a day of the visit)")
    valid_to: date
    registered_facility: code(5, min_length=5) = Field(..., examples=["35001"], description="MA_DKBD")
    five_year_date: date | None = Field(
        None, description="5 consecutive years insured from (NAM_NAM_LIEN_TUC)"
    )


class PriceHeldIn(BaseModel):
    price_code: code(30, min_length=1) = Field(..., examples=["XN-CRP"])
    visit_id: code(36) | None = Field(None, description="required when the held line has no visit")
    quantity: code(20) | None = Field(
        None, description="decimal, at most 3 places; default 1", examples=["1"]
    )
    remember: bool = Field(False, description="map the order code to this price item for later orders")


class RefundItemResolveIn(BaseModel):
    refund_reference: code(100) | None = Field(
        None,
        description="the provider's refund id or the bank transfer's reference",
        examples=["FT24215000123"],
    )
    note: text(500, min_length=1) = Field(..., examples=["Đã hoàn tiền qua VNPay cho người bệnh"])


class DismissIn(BaseModel):
    reason: text(500, min_length=1)


class VoidIn(BaseModel):
    reason: text(500, min_length=1)


# --- responses -----------------------------------------------------------------------------------------
class Price(Out):
    code: str = Field(..., examples=["XN-CTM"])
    name: str
    category: str
    unit: str
    hospital_price: Number
    insurance_price: Number
    covered: bool = Field(..., description="in the BHYT list (PHAM_VI 1)")
    payment_ratio: int = Field(..., description="TYLE_TT_BH, percent")
    bhyt_code: str | None
    effective_from: date
    effective_to: date | None


class PricePage(Out):
    items: list[Price]


class Charge(Out):
    id: str
    visit_id: str
    invoice_id: str | None
    patient_id: str
    price_code: str
    name: str
    category: str
    unit: str
    quantity: str = Field(..., description="decimal text", examples=["1", "0.5"])
    hospital_unit_price: Number
    insurance_unit_price: Number
    covered: bool
    payment_ratio: int
    bhyt_code: str | None
    xml_group: int | None
    department_code: str | None
    bed_code: str | None
    ordered_by: str | None
    service_at: Instant
    source: str
    source_event_id: str | None
    reverses_charge_id: str | None
    status: str = Field(..., examples=["posted", "cancelled", "reversal"])
    note: str | None
    posted_by: str | None


class LineSplit(Out):
    """QĐ130 money fields of a line (VND; ``muc_huong`` percent)."""

    thanh_tien_bv: Number
    thanh_tien_bh: Number
    muc_huong: Number
    t_bhtt: Number
    t_bncct: Number
    t_bntt: Number


class InvoiceLine(Charge):
    split: LineSplit


class InvoiceSummary(Out):
    id: str
    number: str
    visit_id: str
    patient_id: str
    status: str = Field(..., examples=["open", "issued", "partially_paid", "paid", "refunded", "void"])
    total_amount: Number
    insurance_amount: Number
    patient_amount: Number
    paid_amount: Number
    refunded_amount: Number
    balance: Number = Field(..., description="patient_amount - paid_amount")
    created_at: Instant
    issued_at: Instant | None


class ListedVisit(Out):
    visit_code: str | None
    card_number: str | None
    patient_name: str | None
    patient_code: str | None


class ListedInvoice(InvoiceSummary):
    visit: ListedVisit


class InvoicePage(Out):
    items: list[ListedInvoice]


class InvoiceVisit(ListedVisit):
    kind: str
    inpatient: bool
    status: str


class Totals(Out):
    t_tongchi_bv: Number
    t_tongchi_bh: Number
    t_bhtt: Number
    t_bncct: Number
    t_bntt: Number


class PaymentLine(Out):
    id: str
    kind: str = Field(..., examples=["payment", "deposit", "refund"])
    amount: Number
    method: str
    provider: str | None
    provider_txn_id: str | None
    received_at: Instant
    reason: str | None


class Invoice(InvoiceSummary):
    """An invoice with its lines, the BHYT split and the payments."""

    visit: InvoiceVisit
    small_visit_rule_applied: bool
    totals: Totals
    lines: list[InvoiceLine]
    cancelled: list[Charge]
    payments: list[PaymentLine]
    deposits: Number


class HeldCharge(Out):
    id: str
    source: str = Field(..., examples=["lab.order.received", "imaging.order.scheduled"])
    source_event_id: str | None
    order_ref: str | None
    order_number: str | None
    visit_id: str | None
    patient_id: str | None
    code: str
    description: str
    quantity: str
    ordered_by: str | None
    service_at: Instant
    reason: str = Field(..., examples=["unknown_code", "no_visit", "no_price", "invoice_void"])
    status: str = Field(..., examples=["held", "priced", "dismissed"])
    charge_id: str | None
    resolved_by: str | None
    resolved_at: Instant | None
    note: str | None


class HeldPage(Out):
    items: list[HeldCharge]


class PricedHeld(Out):
    held: HeldCharge
    charge: Charge


class Diagnosis(Out):
    visit_id: str
    code: str
    text: str


class VisitCard(Out):
    number: str
    valid_from: date | None
    valid_to: date | None


class VisitCards(Out):
    """The visit's cards, the one it opened with first."""

    visit_id: str
    cards: list[VisitCard]


class DeskPayment(Out):
    payment_id: str
    kind: str = Field(..., examples=["payment", "deposit"])
    invoice: InvoiceSummary


class Refund(Out):
    refund_id: str
    invoice: InvoiceSummary


class VietQr(Out):
    invoice_id: str
    number: str
    amount: Number
    purpose: str
    bank_bin: str
    account: str
    payload: str = Field(..., description="the EMVCo text of the QR")
    png_base64: str


class Transfer(Out):
    id: str
    provider: str
    provider_txn_id: str | None
    outcome: str
    amount: Number
    description: str | None
    invoice_number: str | None
    bank_reference: str | None
    received_at: Instant


class TransferPage(Out):
    items: list[Transfer]


class Matched(Out):
    payment_id: str | None
    invoice_id: str
    invoice_status: str


class Resolved(Out):
    callback_id: str
    outcome: Literal["accepted", "returned"]
    payment_id: str | None
    invoice_id: str | None
    invoice_status: str | None
    amount: Number


class RefundItem(Out):
    id: str
    provider: str
    provider_txn_id: str
    callback_id: str | None
    invoice_id: str | None
    invoice_number: str | None
    payment_id: str | None
    amount: Number
    reason: str = Field(..., examples=["already_settled", "unknown_invoice", "over_payment"])
    on_invoice: bool
    status: str = Field(..., examples=["open", "refunded"])
    created_at: Instant
    resolved_by: str | None
    resolved_at: Instant | None
    refund_reference: str | None
    note: str | None


class RefundItemPage(Out):
    items: list[RefundItem]


class VnpayReply(Out):
    RspCode: str = Field(..., examples=["00"])  # noqa: N815 - VNPay's names
    Message: str = Field(..., examples=["Confirm Success"])  # noqa: N815


class BankWebhookReply(Out):
    success: bool
    outcome: str
    replay: bool


class MethodTotal(Out):
    received: Number
    refunded: Number
    count: int


class ShiftTotals(Out):
    by_method: dict[str, MethodTotal]
    expected_cash: Number
    counted_cash: Number
    difference: Number


class Shift(Out):
    id: str
    cashier: str
    cashier_name: str | None
    status: str = Field(..., examples=["open", "closed"])
    opened_at: Instant
    closed_at: Instant | None
    opening_float: Number
    counted_cash: Number | None
    totals: ShiftTotals | None


class StatementLine(Out):
    line: int
    date: dt.date
    reference: str
    amount: Number
    description: str


class StatementCount(Out):
    lines: int
    total: Number


class RecordedCount(Out):
    transfers: int
    total: Number


class ReconciledLine(Out):
    reference: str
    statement_amount: Number
    recorded_amount: Number
    invoice_number: str | None
    outcome: str


class UnstatedTransfer(Out):
    reference: str | None
    amount: Number
    invoice_number: str | None
    provider: str
    outcome: str


class Reconciliation(Out):
    id: str
    date: dt.date
    statement: StatementCount
    recorded: RecordedCount
    matched: list[ReconciledLine]
    amount_differs: list[ReconciledLine]
    missing_in_system: list[StatementLine]
    missing_in_statement: list[UnstatedTransfer]
    received_but_unassigned: list[ReconciledLine]
    balanced: bool
