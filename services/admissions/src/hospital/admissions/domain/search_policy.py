"""What each role may search the patient index by (bulk disclosure: a role finds the patients its work
brings to it, it does not browse the index).

* Reception, nurses and doctors find patients however they come: name (with or without diacritics,
  a birth year with it), CCCD, CMND, BHYT number, phone, patient code.
* The cashier, lab technicians, radiographers and radiologists get a patient from a document in hand
  (the invoice, the specimen label, the order, the worklist): exact identifiers only, patient code,
  CCCD, CMND, BHYT number; no names, no phones.
* Nobody lists by birth year alone (``q=1960``), and a name needs at least two letters.
* Pages: at most :data:`BROWSE_PAGE` results for the browsing roles, :data:`EXACT_PAGE` for the others.

Service identities (other services' own look-ups, e.g. the lab checking an order's patient code) may
use every kind, at the browsing page size.
"""

from __future__ import annotations

from collections.abc import Iterable

from hospital.chassis.security import SERVICE_ROLE

IDENTIFIERS = frozenset({"patient_code", "cccd", "old_id_number", "bhyt"})
EVERY_KIND = frozenset({*IDENTIFIERS, "phone", "name"})
BROWSE_ROLES = frozenset({"receptionist", "nurse", "doctor", SERVICE_ROLE})
EXACT_ROLES = frozenset({"cashier", "lab_technician", "radiographer", "radiologist"})
BROWSE_PAGE = 50
EXACT_PAGE = 5
MIN_NAME_LETTERS = 2


def allowed_kinds(roles: Iterable[str]) -> frozenset[str]:
    held = set(roles)
    if held & BROWSE_ROLES:
        return EVERY_KIND
    if held & EXACT_ROLES:
        return IDENTIFIERS
    return frozenset()


def page_limit(roles: Iterable[str]) -> int:
    return BROWSE_PAGE if set(roles) & BROWSE_ROLES else EXACT_PAGE


def describe(kinds: frozenset[str]) -> str:
    names = {
        "patient_code": "patient code",
        "cccd": "CCCD",
        "old_id_number": "CMND",
        "bhyt": "BHYT number",
        "phone": "phone",
        "name": "name",
    }
    return ", ".join(
        names[k] for k in ("name", "patient_code", "cccd", "old_id_number", "bhyt", "phone") if k in kinds
    )
