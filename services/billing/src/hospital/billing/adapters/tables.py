"""Billing database tables (SQLAlchemy Core). Amounts are integer VND (what a patient pays); unit prices
carry the decision's 3 decimals (``UnitPrice``, NUMERIC(18, 3)); quantities are stored as thousandths
(``qty_milli``) so XML130's three decimals survive every backend exactly."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)

from hospital.chassis.db import UtcDateTime

metadata = MetaData()
Money = BigInteger
_THOUSANDTH = Decimal("0.001")


class UnitPrice(TypeDecorator[Decimal | int]):
    """A unit price in VND with up to 3 decimals (QĐ 130 DON_GIA: tender drug prices are not whole đồng):
    NUMERIC(18, 3). Written from ``int`` or ``Decimal`` (more than 3 decimals and floats are refused),
    read back as ``int`` when whole and as an exact ``Decimal`` otherwise. SQLite keeps the number as a
    float of 15 significant digits: read back rounded to the 3 places, exact below 10^12 VND."""

    impl = Numeric(18, 3)
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        # SQLite has no decimal type: take the float and round it here (no lossy conversion warning)
        native = dialect.name != "sqlite"
        return dialect.type_descriptor(Numeric(18, 3, asdecimal=native))

    def process_bind_param(self, value: Decimal | int | None, dialect: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            raise TypeError(f"a unit price is an int or a Decimal, not {type(value).__name__}")
        exact = Decimal(value)
        if not exact.is_finite() or exact != exact.quantize(_THOUSANDTH):
            raise ValueError(f"a unit price has at most 3 decimals, got {value}")
        return exact if dialect.name != "sqlite" else float(exact)

    def process_result_value(self, value: Any, dialect: Any) -> Decimal | int | None:
        if value is None:
            return None
        exact = (value if isinstance(value, Decimal) else Decimal(repr(value))).quantize(_THOUSANDTH)
        return int(exact) if exact == exact.to_integral_value() else exact.normalize()


price_items = Table(
    "price_items",
    metadata,
    Column("code", String(30), primary_key=True),
    Column("effective_from", Date, primary_key=True),
    Column("effective_to", Date, nullable=True),  # inclusive; NULL = still in force
    Column("name", String(300), nullable=False),
    Column("category", String(20), nullable=False),  # exam, lab, imaging, procedure, bed, supply, drug
    Column("unit", String(30), nullable=False),
    Column("hospital_price", UnitPrice(), nullable=False),  # NUMERIC(18, 3) (migration 0015)
    Column("insurance_price", UnitPrice(), nullable=False),
    Column("covered", Boolean, nullable=False),  # in the BHYT list (PHAM_VI 1)
    Column("payment_ratio", Integer, nullable=False, server_default=text("100")),  # TYLE_TT_BH
    Column("bhyt_code", String(50), nullable=False),  # MA_DICH_VU / MA_THUOC / MA_VAT_TU
    Column("xml_group", Integer, nullable=False),  # MA_NHOM
    # drugs, for XML2 (migration 0004): HAM_LUONG, DANG_BAO_CHE, DUONG_DUNG (national route code),
    # SO_DANG_KY (registration number) and TT_THAU (tender decision;package;group;year) from the tender
    Column("strength", String(200), nullable=True),
    Column("dosage_form", String(200), nullable=True),
    Column("route_code", String(4), nullable=True),
    Column("registration_number", String(100), nullable=True),
    Column("tender", String(50), nullable=True),
    # a high-cost technical service (DVKT cao chi phí): capped at 40 months of base salary (migration 0010)
    Column("high_cost", Boolean, nullable=False, server_default=false()),
)

visits = Table(
    "visits",
    metadata,  # billing's copy of what it needs from admissions
    Column("id", String(36), primary_key=True),
    Column("visit_code", String(30), nullable=False),
    Column("patient_id", String(36), nullable=False, index=True),
    Column("patient_code", String(20), nullable=False),
    Column("patient_name", String(200), nullable=False),
    Column("birth_year", Integer, nullable=True),
    Column("birth_month", Integer, nullable=True),
    Column("birth_day", Integer, nullable=True),
    Column("sex", Integer, nullable=False),  # 1 Nam, 2 Nữ, 3 undetermined (XML130)
    Column("cccd", String(12), nullable=False),
    Column("kind", String(20), nullable=False),  # insured, fee_paying, emergency, referral
    Column("card_number", String(15), nullable=True),
    Column("card_valid_from", Date, nullable=True),
    Column("card_valid_to", Date, nullable=True),
    Column("card_facility", String(20), nullable=True),
    Column("department_code", String(20), nullable=False),
    Column("inpatient", Boolean, nullable=False),
    Column("status", String(20), nullable=False),  # open, closed
    Column("opened_at", UtcDateTime(), nullable=False),
    Column("closed_at", UtcDateTime(), nullable=True),
    Column("discharge_type", String(30), nullable=True),
    Column("diagnosis_code", String(10), nullable=True),  # ICD-10 of the main diagnosis (for XML130)
    Column("diagnosis_text", String(500), nullable=True),
    # migration 0011: the secondary diagnoses (MA_BENH_KT, ICD-10 codes joined by ";"), when the
    # diagnosis held was recorded (an older one never replaces it) and who gave it (emr, cashier)
    Column("diagnosis_secondary", String(255), nullable=True),
    Column("diagnosis_at", UtcDateTime(), nullable=True),
    Column("diagnosis_source", String(10), nullable=True),
    # for the claim's XML1 (migration 0004): where the patient lives, the phone, the card's 5-year date,
    # the referral paper the patient came with
    Column("address", String(500), nullable=True),
    Column("province_code", String(3), nullable=True),
    Column("phone", String(20), nullable=True),
    Column("card_five_year_date", Date, nullable=True),
    Column("referral_code", String(50), nullable=True),
    # the doctor who saved the consultation (migration 0012, from emr.diagnosis.recorded): MA_BAC_SI of
    # the examination and of lines without an ordering doctor
    Column("consulting_doctor", String(100), nullable=True),
    # national codes of what reception recorded (migration 0013): MA_DANTOC, MA_NGHE_NGHIEP
    Column("ethnicity_code", String(2), nullable=True),
    Column("occupation_code", String(5), nullable=True),
)

stays = Table(
    "stays",
    metadata,  # one open bed segment per admission: closed and charged on transfer/discharge
    Column("admission_id", String(36), primary_key=True),
    Column("visit_id", String(36), ForeignKey("visits.id"), nullable=False),
    Column("ward_code", String(20), nullable=False),
    Column("bed_code", String(30), nullable=False),
    Column("admitted_at", UtcDateTime(), nullable=False),
    Column("segment_start", UtcDateTime(), nullable=False),
    Column("status", String(20), nullable=False),  # active, discharged
    # bed class charged for the segment's first day when higher than the ward's (a transfer day:
    # one bed-day per calendar day, at the highest-priced ward of that day); migration 0003
    Column("day_class", String(30), nullable=True),
    # the cheapest bed class of the transfer day (migration 0008): half a day there, half at day_class
    Column("day_low_class", String(30), nullable=True),
)

invoices = Table(
    "invoices",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("number", String(12), nullable=False, unique=True),  # HD000123
    Column("visit_id", String(36), ForeignKey("visits.id"), nullable=False, unique=True),
    Column("patient_id", String(36), nullable=False, index=True),
    Column("status", String(20), nullable=False),  # open, issued, partly_paid, paid, refunded, void
    Column("total_amount", Money, nullable=False),  # Σ THANH_TIEN_BV
    Column("insurance_amount", Money, nullable=False),  # Σ T_BHTT
    Column("patient_amount", Money, nullable=False),  # Σ T_BNCCT + T_BNTT
    Column("paid_amount", Money, nullable=False),  # payments − refunds
    Column("refunded_amount", Money, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("issued_at", UtcDateTime(), nullable=True),
    Column("voided_at", UtcDateTime(), nullable=True),
    Index("ix_invoices_status", "status"),
)

charges = Table(
    "charges",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("visit_id", String(36), ForeignKey("visits.id"), nullable=False, index=True),
    Column("invoice_id", String(36), ForeignKey("invoices.id"), nullable=False, index=True),
    Column("patient_id", String(36), nullable=False),
    Column("price_code", String(30), nullable=False),
    Column("name", String(300), nullable=False),
    Column("category", String(20), nullable=False),
    Column("unit", String(30), nullable=False),
    Column("qty_milli", BigInteger, nullable=False),  # quantity × 1000; negative on a reversal
    Column("hospital_unit_price", UnitPrice(), nullable=False),  # NUMERIC(18, 3) (migration 0015)
    Column("insurance_unit_price", UnitPrice(), nullable=False),
    Column("covered", Boolean, nullable=False),
    Column("payment_ratio", Integer, nullable=False),
    Column("service_ratio", Integer, nullable=False),
    Column("bhyt_code", String(50), nullable=False),
    Column("xml_group", Integer, nullable=False),
    Column("department_code", String(20), nullable=False),
    Column("bed_code", String(30), nullable=True),
    Column("ordered_by", String(50), nullable=True),  # practising-licence code of the ordering doctor
    Column("service_at", UtcDateTime(), nullable=False),
    Column("source", String(60), nullable=False),  # admissions.visit.opened, manual, ...
    Column(
        "source_key", String(150), nullable=False, unique=True
    ),  # exactly-once key (event id[#part], request id)
    Column("source_event_id", String(100), nullable=True),
    Column("reverses_charge_id", String(36), ForeignKey("charges.id"), nullable=True, unique=True),
    Column("status", String(20), nullable=False),  # posted, reversed (original), reversal
    Column("note", String(500), nullable=True),
    Column("posted_by", String(200), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column(
        "order_ref", String(80), nullable=True, index=True
    ),  # lab:<order id>, imaging:<order id> (migration 0003)
    Column("high_cost", Boolean, nullable=False, server_default=false()),  # copied from the price item (0010)
)

# Lab and imaging orders billing has heard of (migration 0003): the last state wins, so a cancellation
# that overtakes its order (redelivery, separate streams) still stops the order from being charged.
clinical_orders = Table(
    "clinical_orders",
    metadata,
    Column("order_ref", String(80), primary_key=True),  # lab:<order id>, imaging:<order id>
    Column("source", String(10), nullable=False),  # lab, imaging
    Column("order_number", String(40), nullable=True),  # lab order number / imaging accession number
    Column("visit_id", String(36), nullable=True),
    Column("patient_id", String(36), nullable=True),
    Column("status", String(20), nullable=False),  # active, cancelled, discontinued, completed
    Column("charged_event_id", String(100), nullable=True),  # the order event that posted its charges
    Column("updated_at", UtcDateTime(), nullable=False),
)

# Order codes (lab test codes, imaging procedure ids) → price-list items (migration 0003 seeds the
# catalogue's codes; a cashier who prices a held charge may add the code here).
code_map = Table(
    "code_map",
    metadata,
    Column("source", String(10), primary_key=True),  # lab, imaging
    Column("code", String(64), primary_key=True),
    Column("price_code", String(30), nullable=False),
)

# Order lines billing could not price by itself (unknown code, no visit, no price in force, void
# invoice): kept for a cashier, never dropped. Pricing one posts a charge with the same source_key.
held_charges = Table(
    "held_charges",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("source", String(60), nullable=False),  # lab.order.received, imaging.order.scheduled
    Column("source_key", String(150), nullable=False, unique=True),
    Column("source_event_id", String(100), nullable=True),
    Column("order_ref", String(80), nullable=True, index=True),
    Column("order_number", String(40), nullable=True),
    Column("visit_id", String(36), nullable=True),
    Column("patient_id", String(36), nullable=True),
    Column("code", String(64), nullable=False),  # the order's own code
    Column("description", String(300), nullable=False),
    Column("qty_milli", BigInteger, nullable=False),
    Column("ordered_by", String(50), nullable=True),
    Column("service_at", UtcDateTime(), nullable=False),
    Column("reason", String(30), nullable=False),  # unknown_code, no_visit, no_price, invoice_void
    Column("status", String(20), nullable=False),  # held, priced, dismissed
    Column("charge_id", String(36), nullable=True),
    Column("resolved_by", String(200), nullable=True),
    Column("resolved_at", UtcDateTime(), nullable=True),
    Column("note", String(500), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Index("ix_held_charges_status", "status"),
)

shifts = Table(
    "cashier_shifts",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("cashier", String(200), nullable=False),
    Column("cashier_name", String(200), nullable=False),
    Column("opened_at", UtcDateTime(), nullable=False),
    Column("closed_at", UtcDateTime(), nullable=True),
    Column("opening_float", Money, nullable=False),
    Column("counted_cash", Money, nullable=True),
    Column("status", String(10), nullable=False),  # open, closed
    Column("totals", JSON, nullable=True),
    Index(
        "ix_shift_open_cashier",
        "cashier",
        unique=True,
        postgresql_where=text("status = 'open'"),
        sqlite_where=text("status = 'open'"),
    ),
)

payments = Table(
    "payments",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("invoice_id", String(36), ForeignKey("invoices.id"), nullable=False, index=True),
    Column("kind", String(10), nullable=False),  # payment, deposit, refund
    Column("amount", Money, nullable=False),  # positive; a refund subtracts
    Column("method", String(20), nullable=False),  # cash, card, bank_transfer, vnpay, momo
    Column("provider", String(10), nullable=True),
    Column("provider_txn_id", String(100), nullable=True),
    Column("bank_reference", String(100), nullable=True),
    Column("shift_id", String(36), ForeignKey("cashier_shifts.id"), nullable=True, index=True),
    Column("refund_of", String(36), nullable=True),
    Column("reason", String(500), nullable=True),
    Column("received_by", String(200), nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("request_id", String(100), nullable=True, unique=True),
    UniqueConstraint("provider", "provider_txn_id", name="uq_payment_provider_txn"),
    Index("ix_payments_received_at", "received_at"),
)

provider_callbacks = Table(
    "provider_callbacks",
    metadata,  # every authentic callback, once: the idempotency key and raw record
    Column("id", String(36), primary_key=True),
    Column("provider", String(10), nullable=False),
    Column("provider_txn_id", String(100), nullable=False),
    Column("invoice_number", String(30), nullable=True),
    Column("invoice_id", String(36), nullable=True),
    Column("amount", Money, nullable=False),
    Column("outcome", String(20), nullable=False),
    # paid, failed, amount_mismatch, unknown_invoice, already_settled, unmatched, outgoing, matched
    Column("reply_code", String(4), nullable=False),
    Column("payment_id", String(36), nullable=True),
    Column("description", String(500), nullable=False),
    Column("bank_reference", String(100), nullable=True),
    Column("occurred_at", UtcDateTime(), nullable=True),
    Column("raw", JSON, nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("resolved_by", String(200), nullable=True),
    UniqueConstraint("provider", "provider_txn_id", name="uq_callback_provider_txn"),
    Index("ix_callbacks_outcome", "outcome"),
)

refund_items = Table(
    "refund_items",
    metadata,  # money a payer sent that the bill does not need: a cashier gives it back (a work item)
    Column("id", String(36), primary_key=True),
    Column("provider", String(10), nullable=False),  # vnpay, momo, sepay, casso
    Column("provider_txn_id", String(100), nullable=False),
    Column("callback_id", String(36), nullable=True),  # the provider_callbacks row
    Column("invoice_id", String(36), nullable=True),
    Column("invoice_number", String(30), nullable=True),
    Column("payment_id", String(36), nullable=True),  # the payment that over-paid (on_invoice)
    Column("amount", Money, nullable=False),  # what goes back
    Column("reason", String(20), nullable=False),  # already_settled, unknown_invoice, over_payment
    # True: the money is on the invoice (its balance is negative by ``amount``); False: it never was
    Column("on_invoice", Boolean, nullable=False),
    Column("status", String(10), nullable=False),  # open, refunded
    Column("created_at", UtcDateTime(), nullable=False),
    Column("resolved_by", String(200), nullable=True),
    Column("resolved_at", UtcDateTime(), nullable=True),
    Column("refund_reference", String(100), nullable=True),
    Column("note", String(500), nullable=True),
    UniqueConstraint("provider", "provider_txn_id", name="uq_refund_item_provider_txn"),
    Index("ix_refund_items_status", "status", "created_at"),
)

rejected_callbacks = Table(
    "rejected_callbacks",
    metadata,  # forged, stale or malformed calls, kept for investigation
    Column("id", String(36), primary_key=True),
    Column("provider", String(10), nullable=False),
    Column("reason", String(500), nullable=False),
    Column("client", String(100), nullable=False),
    Column("raw", Text, nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
)

claims = Table(
    "claims",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("visit_id", String(36), ForeignKey("visits.id"), nullable=False, index=True),
    Column("ma_lk", String(50), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("document", Text, nullable=False),
    Column("exported_by", String(200), nullable=False),
    Column("exported_at", UtcDateTime(), nullable=False),
)

reconciliations = Table(
    "reconciliations",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("business_date", Date, nullable=False),
    Column("statement_sha256", String(64), nullable=False),
    Column("report", JSON, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

# MA_GIUONG of the claim (migration 0009): the hospital's bed codes mapped to the decision's 4 characters,
# H (planned bed), T (extra), C (of choice), K (stretcher, folding bed) + the bed's number in its department.
bed_codes = Table(
    "bed_codes",
    metadata,
    Column("bed_code", String(30), primary_key=True),  # the hospital's (admissions) bed code
    Column("department_code", String(20), nullable=False),
    Column("claim_code", String(4), nullable=False),
)


# --- what the EMR gives the claim (migration 0012) ---------------------------------------------------------
# The health-practitioner identifier (MA_BAC_SI, MA_BS, MA_BS_DOC_KQ, NGUOI_THUC_HIEN) of a staff member's
# sign-in subject (``user:bs.minh``): reference data, kept by an administrator (PUT /api/v1/staff/{subject}).
staff_identifiers = Table(
    "staff_identifiers",
    metadata,
    Column("subject", String(100), primary_key=True),
    Column("practitioner_id", String(50), nullable=False),
    Column("full_name", String(200), nullable=False),
    Column("title", String(100), nullable=True),
    Column("updated_at", UtcDateTime(), nullable=False),
)

# The signed papers of a visit (emr.paper.signed; the discharge summary, emr.discharge.signed, as kind
# discharge_summary): one per kind, the latest signed wins.
claim_papers = Table(
    "claim_papers",
    metadata,
    Column("visit_id", String(36), primary_key=True),
    Column("kind", String(20), primary_key=True),  # discharge_paper, referral_paper, sick_leave, revisit
    Column("paper_id", String(36), nullable=False),
    Column("number", String(50), nullable=False),
    Column("data", JSON, nullable=False),  # the EMR's fields of the paper (emr.proto DischargePaper, ...)
    Column("diagnoses", JSON, nullable=False),
    Column("department_code", String(20), nullable=True),
    Column("signer", String(100), nullable=False),
    Column("signer_name", String(200), nullable=False),
    Column("signed_at", UtcDateTime(), nullable=False),
    Column("source_event_id", String(100), nullable=False),
)

# XML4: verified lab results (lab.result.verified|amended, the highest revision wins; the visit through the
# lab order billing charged) and signed imaging reports (emr.report.signed)
claim_results = Table(
    "claim_results",
    metadata,
    Column("id", String(120), primary_key=True),  # lab:<result id>, report:<study instance uid>
    Column("source", String(10), nullable=False),  # lab, imaging
    Column("visit_id", String(36), nullable=True, index=True),
    Column("order_ref", String(80), nullable=True, index=True),  # lab:<lab order id>
    Column("accession", String(40), nullable=True),
    Column("test_code", String(64), nullable=False),
    Column("test_name", String(300), nullable=False),
    Column("value", Text, nullable=False),
    Column("unit", String(50), nullable=False),
    Column("description", Text, nullable=False),  # MO_TA
    Column("conclusion", Text, nullable=False),  # KET_LUAN
    Column("result_at", UtcDateTime(), nullable=False),
    Column("read_by", String(100), nullable=False),  # subject of who verified / signed
    Column("revision", Integer, nullable=False),
)

# XML5: signed clinical notes (emr.note.signed); an amendment replaces the version it amends
claim_course = Table(
    "claim_course",
    metadata,
    Column("id", String(36), primary_key=True),  # the EMR document id
    Column("visit_id", String(36), nullable=False, index=True),
    Column("kind", String(30), nullable=False),
    Column("course", Text, nullable=False),  # DIEN_BIEN_LS
    Column("stage", Text, nullable=False),  # GIAI_DOAN_BENH
    Column("reason", Text, nullable=False),  # the note's reason section: LY_DO_VV / LY_DO_VNT
    Column("diagnosis", Text, nullable=False),  # its diagnosis section: CHAN_DOAN_VAO
    Column("at", UtcDateTime(), nullable=False),  # THOI_DIEM_DBLS
    Column("performer", String(100), nullable=False),  # subject of the signer
    Column("replaced_by", String(36), nullable=True),
)

# MA_KHOA of the claim (migration 0013): the hospital's department and ward codes mapped to the national
# department codes (QĐ 5937/QĐ-BYT Phụ lục 5, K01..). A line whose department has no mapping stops the claim.
department_codes = Table(
    "department_codes",
    metadata,
    Column("department_code", String(20), primary_key=True),  # the hospital's (admissions) code
    Column("claim_code", String(3), nullable=False),
)

# Cards recorded during a visit after the one it opened with (migration 0014): a card issued during a stay
# (new benefit level, new registered facility, renewal). Each line is paid under the card valid on its day;
# the claim lists every card, ";"-joined (MA_THE_BHYT, MA_DKBD, GT_THE_TU, GT_THE_DEN).
visit_cards = Table(
    "visit_cards",
    metadata,
    Column("visit_id", String(36), ForeignKey("visits.id"), primary_key=True),
    Column("card_number", String(15), primary_key=True),
    Column("valid_from", Date, primary_key=True),
    Column("valid_to", Date, nullable=False),
    Column("registered_facility", String(5), nullable=False),  # MA_DKBD, 5 digits
    Column("five_year_date", Date, nullable=True),
    Column("recorded_by", String(200), nullable=False),
    Column("recorded_at", UtcDateTime(), nullable=False),
)
