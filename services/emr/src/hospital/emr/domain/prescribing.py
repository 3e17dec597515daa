"""Prescription and medication-order checks: drug allergy (an allergy to an ingredient, a class key such
as "penicillin" or "nsaid", or an ATC prefix such as "J01C"), duplicate drug (the same ingredient twice)
and duplicate therapy (two drugs of the same ATC level-4 class, e.g. two proton-pump inhibitors A02BC, or
sharing a class key such as "nsaid").
Each alert must be overridden by the prescriber with a reason before the prescription is saved."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hospital.emr.domain.text import fold

MIN_REASON = 5
_DOUBLE = re.compile(r"(.)\1")


@dataclass(frozen=True)
class DrugFacts:
    code: str
    name: str
    ingredient_codes: tuple[str, ...]
    atc_code: str
    atc_class: str


@dataclass(frozen=True)
class AllergyFacts:
    substance: str
    ingredient_code: str


@dataclass(frozen=True)
class Alert:
    kind: str  # allergy, duplicate_drug, duplicate_therapy
    severity: str  # high, moderate
    drug_code: str
    message: str
    related: str


def _key(text: str) -> str:
    """ "Penicilin" and "penicillin" compare equal (Vietnamese spelling drops doubled letters)."""
    return _DOUBLE.sub(r"\1", fold(text).replace(" ", "_"))


def allergy_matches(drug: DrugFacts, allergy: AllergyFacts) -> bool:
    raw = allergy.ingredient_code or allergy.substance
    key = _key(raw)
    if not key:
        return False
    if any(_key(code) == key for code in drug.ingredient_codes):
        return True
    compact = raw.strip().upper()
    return bool(re.fullmatch(r"[A-Z][0-9]{2}[A-Z]{0,2}[0-9]{0,2}", compact)) and drug.atc_code.startswith(
        compact
    )


def check(
    new: Sequence[DrugFacts], current: Iterable[DrugFacts], allergies: Iterable[AllergyFacts]
) -> list[Alert]:
    """Alerts for the drugs being prescribed (``new``), against each other, the patient's active
    medication (``current``) and active allergies."""
    alerts: list[Alert] = []
    allergies = list(allergies)
    current = list(current)
    for i, drug in enumerate(new):
        for a in allergies:
            if allergy_matches(drug, a):
                alerts.append(
                    Alert(
                        "allergy",
                        "high",
                        drug.code,
                        f"Bệnh nhân dị ứng {a.substance}: {drug.name} có thể gây phản ứng",
                        a.substance,
                    )
                )
        others = [*new[:i], *current]
        for other in others:
            if other.code == drug.code or set(other.ingredient_codes[:1]) & set(drug.ingredient_codes[:1]):
                alerts.append(
                    Alert(
                        "duplicate_drug",
                        "high",
                        drug.code,
                        f"{drug.name} trùng hoạt chất với {other.name}",
                        other.code,
                    )
                )
            elif (len(drug.atc_code) >= 5 and other.atc_code[:5] == drug.atc_code[:5]) or (
                set(other.ingredient_codes[1:]) & set(drug.ingredient_codes[1:])
            ):
                alerts.append(
                    Alert(
                        "duplicate_therapy",
                        "moderate",
                        drug.code,
                        f"{drug.name} và {other.name} cùng nhóm {drug.atc_class} (trùng nhóm điều trị)",
                        other.code,
                    )
                )
    return alerts


def unresolved(alerts: Iterable[Alert], overrides: Iterable[tuple[str, str, str]]) -> list[Alert]:
    """Alerts without an override (drug code, kind, reason) whose reason is long enough."""
    ok = {(code, kind) for code, kind, reason in overrides if len(reason.strip()) >= MIN_REASON}
    return [a for a in alerts if (a.drug_code, a.kind) not in ok]
