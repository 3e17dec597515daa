"""From clinical orders to charge lines (pure rules, no I/O).

A lab order lists catalogue tests (a panel is already expanded into its tests by the lab). Each test
code maps to a price item; tests that map to the same item (the 21 parameters of a blood count, Na/K/Cl
of an electrolyte panel, the strips of a urinalysis) are one service and give one charge line. A code
with no mapping is never dropped: it becomes a held line for a cashier to price.

An imaging order names one requested procedure: its id maps to a price item (``modality:<MOD>`` is
consulted after the procedure id, for hospitals that price a modality flat); otherwise it is held.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class OrderLine:
    price_code: str
    codes: tuple[str, ...]  # the order's codes billed by this line


@dataclass(frozen=True)
class OrderLines:
    lines: list[OrderLine] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # codes with no price mapping, in order


def lab_lines(test_codes: Iterable[str], mapping: Mapping[str, str]) -> OrderLines:
    """One line per distinct price item, in the order the tests were first listed; unknown codes kept."""
    grouped: dict[str, list[str]] = {}
    unknown: list[str] = []
    for raw in test_codes:
        code = raw.strip().upper()
        if not code:
            continue
        price = mapping.get(code)
        if price is None:
            if code not in unknown:
                unknown.append(code)
            continue
        codes = grouped.setdefault(price, [])
        if code not in codes:
            codes.append(code)
    return OrderLines([OrderLine(p, tuple(c)) for p, c in grouped.items()], unknown)


def imaging_price_code(procedure_id: str, modality: str, mapping: Mapping[str, str]) -> str | None:
    """The price item of a requested procedure, or None (held for a cashier)."""
    code = procedure_id.strip().upper()
    if code and code in mapping:
        return mapping[code]
    mod = modality.strip().upper()
    return mapping.get(f"MODALITY:{mod}") if mod else None
