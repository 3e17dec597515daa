"""Who may read and write which chart.

Doctors and nurses work on the patients of their own departments: an encounter's department, or for an
outpatient encounter also the department of the room (Khoa Khám bệnh). Reading outside one's departments
needs a stated reason (break-the-glass): it is allowed, recorded and reported. Writing needs the
department. Radiologists read the charts of patients with imaging studies; auditors read only the audit
trail; receptionists and cashiers do not read charts. Services (other services' identities) may read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from hospital.chassis.errors import DomainError
from hospital.chassis.security import PermissionDenied, Principal

CLINICIANS = ("doctor", "nurse")
CHART_READERS = ("doctor", "nurse", "radiologist")
MIN_REASON = 10


class BreakGlassRequired(DomainError):
    status = 403

    def __init__(self, department: str) -> None:
        super().__init__(
            "chart.break_glass_required",
            f"Bệnh nhân thuộc khoa {department}, ngoài khoa của bạn: cần nêu lý do truy cập "
            "(break-the-glass)",
            field="break_glass_reason",
        )


def departments_of(principal: Principal, directory: Mapping[str, list[str]]) -> frozenset[str]:
    """The caller's departments: the token's "departments" (list) or "department" claim, else the staff
    directory setting."""
    claim = principal.claims.get("departments") or principal.claims.get("department")
    if isinstance(claim, str):
        return frozenset({claim})
    if isinstance(claim, list):
        return frozenset(str(c) for c in claim)
    return frozenset(directory.get(principal.subject, ()))


@dataclass(frozen=True)
class Access:
    break_glass: bool
    reason: str


def check_read(
    principal: Principal,
    departments: frozenset[str],
    encounter_departments: Iterable[str],
    reason: str | None,
) -> Access:
    """May the caller read a chart whose encounters belong to ``encounter_departments``?"""
    if principal.is_service:
        return Access(False, "")
    if not principal.has_any(CHART_READERS):
        raise PermissionDenied(f"role(s) {sorted(principal.roles)} may not read charts")
    depts = set(encounter_departments)
    if principal.has_any(("radiologist",)) or not depts or depts & departments:
        return Access(False, "")
    reason = (reason or "").strip()
    if len(reason) < MIN_REASON:
        raise BreakGlassRequired(", ".join(sorted(depts)))
    return Access(True, reason)


def check_write(
    principal: Principal,
    departments: frozenset[str],
    encounter_department: str,
    roles: tuple[str, ...] = ("doctor",),
) -> None:
    if principal.is_service:
        return
    if not principal.has_any(roles):
        raise PermissionDenied(
            f"role(s) {sorted(principal.roles)} may not do this; needs one of {sorted(roles)}"
        )
    if encounter_department not in departments:
        raise PermissionDenied(f"chỉ bác sĩ khoa {encounter_department} được ghi hồ sơ của lượt khám này")
