from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import ClassVar, Literal

from hospital.billing.domain.insurance import LAW51_FROM
from hospital.chassis.settings import ServiceSettings


class BillingSettings(ServiceSettings):
    """Environment: HOSPITAL_BILLING_<NAME> (or HOSPITAL_<NAME> for shared settings)."""

    service: ClassVar[str] = "billing"
    secret_identifiers: ClassVar[tuple[str, ...]] = ("momo_access_key",)  # MoMo issues it; not a key
    http_port: int = 8005
    grpc_port: int = 50055

    # Facility: XML130 MA_CSKCB (5 digits: province + facility) and its signing certificate.
    facility_code: str = "35001"
    facility_name: str = "Bệnh viện Đa khoa tỉnh (demo)"
    facility_key_file: Path | None = None  # PEM private key of the facility's signing certificate
    facility_cert_file: Path | None = None  # PEM certificate (embedded in the XML-DSig KeyInfo)
    # MA_TTDV of the claim tables: health identifier (BHXH number, 10 digits) of the head of the facility
    # or the person the head authorises to sign.
    facility_head_id: str = ""

    # VietQR: the hospital's collection account (NAPAS 247).
    bank_bin: str = "970415"  # VietinBank
    bank_account: str = "113366668888"
    bank_account_name: str = "BENH VIEN DA KHOA TINH"

    # Payment providers. Development placeholders; production refuses them (secret_values).
    vnpay_tmn_code: str = "DEVTMN01"
    vnpay_hash_secret: str = "dev-vnpay-hash-secret"
    momo_partner_code: str = "MOMODEV"
    momo_access_key: str = "dev-momo-access-key"
    momo_secret_key: str = "dev-momo-secret-key"
    bank_webhook_secret: str = "dev-bank-webhook-secret"  # SePay API key / Casso webhook key
    casso_tolerance_seconds: int = 300
    # PostgreSQL: raw connections per process for the gateway-callback fast path (0 turns it off).
    callback_pool_size: int = 8

    # Durable consumer of the ADMISSIONS stream (tests give each running instance its own).
    admissions_durable: str = "billing-admissions"
    # Durable consumers of the LAB and IMAGING streams (charge capture from orders).
    lab_durable: str = "billing-lab"
    imaging_durable: str = "billing-imaging"
    # Durable consumer of the EMR stream: the doctor's diagnoses for the claim (emr.diagnosis.recorded).
    emr_durable: str = "billing-emr"
    # Where those durables start when first created: "new" (default) so that turning charge capture on
    # does not charge the orders already on the streams (14 days); "all" replays them.
    order_events_start: Literal["new", "all"] = "new"
    # lương cơ sở for the 15% rule; 0 (default): the one in force on the visit's day
    # (domain.insurance.DEFAULT_RULES)
    base_salary_vnd: int = 0
    # The benefit rules of Law 51/2024/QH15 (Decree 188/2025/NĐ-CP; MA_DOITUONG_KCB from QĐ 3276/QĐ-BYT)
    # apply to visits that start on or after this day; a visit that started before keeps the earlier
    # rules to its end. The self-referred shares depend on the hospital's professional level and the tier
    # it had before 2025 (a provincial general hospital: basic or specialised, formerly provincial).
    law51_from: date = LAW51_FROM
    facility_level: Literal["basic", "specialised"] = "basic"
    facility_former_tier: Literal["district", "provincial", "central"] = "provincial"
    # The largest refund a cashier gives back alone (whole VND); above it an admin does it (ADR 0209).
    refund_cashier_limit: int = 5_000_000

    def secret_values(self) -> dict[str, str]:
        return {
            **super().secret_values(),
            "vnpay_hash_secret": self.vnpay_hash_secret,
            "momo_secret_key": self.momo_secret_key,
            "momo_access_key": self.momo_access_key,
            "bank_webhook_secret": self.bank_webhook_secret,
        }
