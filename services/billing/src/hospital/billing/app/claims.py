"""QĐ130 claim export of a closed insured visit: XML1 from the visit, XML2 (drugs) and XML3 (services,
supplies, bed-days) from the invoice's posted charges and their BHYT split, wrapped in GIAMDINHHS,
signed with the facility certificate and validated against the XSDs before it leaves."""

from __future__ import annotations

import hashlib
import re
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import select

from hospital.billing.adapters.tables import claims, visits
from hospital.billing.app.common import (
    ROUTE_BY_KIND,
    local_date,
    posted_charges,
    quantity_of,
    split_for,
)
from hospital.billing.devcredentials import is_development_certificate
from hospital.billing.domain.insurance import Route
from hospital.billing.domain.pricing import DRUG_GROUPS, SUPPLY_GROUPS
from hospital.billing.domain.xml130 import (
    ChiTietDvkt,
    ChiTietThuoc,
    HoSo,
    TongHop,
    Xml130Error,
    build_giamdinhhs,
    sign,
    validate,
)
from hospital.chassis.app import Runtime
from hospital.chassis.caller import Caller
from hospital.chassis.db import utcnow
from hospital.chassis.errors import Conflict, DomainError, Invalid, NotFound
from hospital.chassis.ids import new_id
from hospital.contracts.billing.v1 import events_pb2

ICD10 = re.compile(r"[A-Z][0-9]{2}(\.[0-9A-Z]{1,2})?")
# MA_DOITUONG_KCB by route (simplified: the decision's table has more cases)
DOITUONG = {Route.REGISTERED: "1.1", Route.REFERRED: "1.3", Route.EMERGENCY: "2", Route.SELF_REFERRED: "3"}
KET_QUA = {"recovered": 1, "improved": 2, "unchanged": 3, "worse": 4, "deceased": 5}


class ClaimService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.settings = rt.settings

    async def set_diagnosis(self, visit_id: str, code: str, text: str, caller: Caller) -> dict[str, Any]:
        code = code.strip().upper()
        if not ICD10.fullmatch(code):
            raise Invalid("claim.diagnosis_code", f"{code!r} is not an ICD-10 code like K80.2", field="code")
        async with self.rt.uow() as uow:
            row = (
                (await uow.session.execute(select(visits).where(visits.c.id == visit_id))).mappings().first()
            )
            if row is None:
                raise NotFound("visit.not_found", f"billing knows no visit {visit_id}")
            await uow.session.execute(
                visits.update()
                .where(visits.c.id == visit_id)
                .values(diagnosis_code=code, diagnosis_text=text.strip()[:500])
            )
            uow.audit(caller.audit("visit.diagnosis", "Visit", visit_id, row["patient_id"], code=code))
            await uow.commit()
        return {"visit_id": visit_id, "code": code, "text": text}

    def _credentials(self) -> tuple[bytes, bytes]:
        key, cert = self.settings.facility_key_file, self.settings.facility_cert_file  # type: ignore[attr-defined]
        if not key or not cert or not Path(key).exists() or not Path(cert).exists():
            raise DomainError(
                "claim.no_certificate",
                "the facility signing key and certificate are not configured "
                "(HOSPITAL_BILLING_FACILITY_KEY_FILE, HOSPITAL_BILLING_FACILITY_CERT_FILE)",
                status=503,
            )
        cert_pem = Path(cert).read_bytes()
        if self.settings.environment == "production" and is_development_certificate(cert_pem):
            raise DomainError(
                "claim.development_certificate",
                "the configured facility certificate is the local "
                "stack's development certificate; configure the facility's own certificate",
                status=503,
            )
        return Path(key).read_bytes(), cert_pem

    async def export(self, visit_id: str, caller: Caller, default_doctor: str | None = None) -> bytes:
        st = self.settings
        key_pem, cert_pem = self._credentials()
        async with self.rt.uow() as uow:
            s = uow.session
            v = (await s.execute(select(visits).where(visits.c.id == visit_id))).mappings().first()
            if v is None:
                raise NotFound("visit.not_found", f"billing knows no visit {visit_id}")
            if v["status"] != "closed" or v["closed_at"] is None:
                raise Conflict("claim.visit_open", "only a closed visit can be claimed")
            if v["kind"] not in ROUTE_BY_KIND or not v["card_number"]:
                raise Conflict("claim.not_insured", "the visit was not covered by a BHYT card")
            if not v["diagnosis_code"]:
                raise Conflict(
                    "claim.no_diagnosis",
                    f"record the main diagnosis (ICD-10) first: PUT /api/v1/visits/{visit_id}/diagnosis",
                )
            rows = await posted_charges(s, visit_id)
            if not rows:
                raise Conflict("claim.empty", "the visit has no charge")
            missing = [r["name"] for r in rows if not (r["ordered_by"] or default_doctor)]
            if missing:
                raise Conflict(
                    "claim.no_doctor",
                    f"lines without the ordering doctor (MA_BAC_SI): {missing[0]}...; "
                    "give ma_bac_si for them",
                    field="ma_bac_si",
                )
            split = split_for(v, rows, st.base_salary_vnd)  # type: ignore[attr-defined]
            ma_lk = v["visit_code"]
            thuoc, dvkt = [], []
            for r, line in zip(rows, split.lines, strict=True):
                common = dict(
                    ma_lk=ma_lk,
                    ma_nhom=r["xml_group"],
                    don_vi_tinh=r["unit"],
                    so_luong=quantity_of(r["qty_milli"]),
                    ma_khoa=r["department_code"] or "KKB",
                    ma_bac_si=r["ordered_by"] or default_doctor,
                    ngay_yl=r["service_at"],
                    **line.xml_fields(),
                )
                if r["xml_group"] in DRUG_GROUPS:
                    thuoc.append(
                        ChiTietThuoc(
                            stt=len(thuoc) + 1,
                            ma_thuoc=r["bhyt_code"],
                            ten_thuoc=r["name"],
                            don_gia=r["hospital_unit_price"],
                            **common,
                        )
                    )
                else:
                    supply = r["xml_group"] in SUPPLY_GROUPS
                    dvkt.append(
                        ChiTietDvkt(
                            stt=len(dvkt) + 1,
                            ma_dich_vu="" if supply else r["bhyt_code"],
                            ma_vat_tu=r["bhyt_code"] if supply else "",
                            ten_dich_vu="" if supply else r["name"],
                            ten_vat_tu=r["name"] if supply else "",
                            don_gia_bv=r["hospital_unit_price"],
                            don_gia_bh=r["insurance_unit_price"],
                            ma_giuong=r["bed_code"] or "",
                            ngay_th_yl=r["service_at"],
                            **common,
                        )
                    )
            today = local_date(utcnow())
            facility = re.sub(r"[^0-9]", "", v["card_facility"] or "")
            birth: date | int = (
                date(v["birth_year"], v["birth_month"], v["birth_day"])
                if v["birth_year"] and v["birth_month"] and v["birth_day"]
                else (v["birth_year"] or 1900)
            )
            summary = TongHop(
                ma_lk=ma_lk,
                ma_bn=v["patient_code"] or v["patient_id"],
                ho_ten=v["patient_name"] or "Không rõ",
                so_cccd=v["cccd"] if re.fullmatch(r"[0-9]{12}", v["cccd"] or "") else "",
                ngay_sinh=birth,
                gioi_tinh=v["sex"],
                ma_the_bhyt=(v["card_number"],),
                ma_dkbd=(facility,) if len(facility) == 5 else (),
                gt_the_tu=(v["card_valid_from"],) if v["card_valid_from"] else (),
                gt_the_den=(v["card_valid_to"],) if v["card_valid_to"] else (),
                chan_doan_rv=v["diagnosis_text"] or "",
                ma_benh_chinh=v["diagnosis_code"],
                ma_doituong_kcb=DOITUONG[ROUTE_BY_KIND[v["kind"]]],
                ngay_vao=v["opened_at"],
                ngay_ra=v["closed_at"],
                ket_qua_dtri=KET_QUA.get(v["discharge_type"] or "", 2),
                ma_loai_rv=2 if v["discharge_type"] == "transferred_out" else 1,
                nam_qt=today.year,
                thang_qt=today.month,
                ma_loai_kcb="03" if v["inpatient"] else "01",
                ma_cskcb=st.facility_code,
            )  # type: ignore[attr-defined]
            try:
                hoso = HoSo(summary, thuoc=tuple(thuoc), dvkt=tuple(dvkt))
                unsigned = build_giamdinhhs([hoso], ma_cskcb=st.facility_code, ngay_lap=today)  # type: ignore[attr-defined]
                signed = sign(unsigned, key_pem, cert_pem)
                validate(signed)
            except Xml130Error as exc:
                raise Conflict("claim.invalid", f"the claim does not pass QĐ130 checks: {exc}") from exc
            digest = hashlib.sha256(signed).hexdigest()
            cid, now = new_id(), utcnow()
            await s.execute(
                claims.insert().values(
                    id=cid,
                    visit_id=visit_id,
                    ma_lk=ma_lk,
                    sha256=digest,
                    document=signed.decode("utf-8"),
                    exported_by=caller.subject,
                    exported_at=now,
                )
            )
            msg = events_pb2.ClaimExported(
                claim_id=cid,
                visit_id=visit_id,
                ma_lk=ma_lk,
                sha256=digest,
                t_tongchi_bv=split.t_tongchi_bv,
                t_bhtt=split.t_bhtt,
            )
            msg.exported_at.FromDatetime(now)
            uow.publish("billing.claim.exported", msg)
            uow.audit(caller.audit("claim.export", "Visit", visit_id, v["patient_id"], sha256=digest))
            await uow.commit()
        return signed
