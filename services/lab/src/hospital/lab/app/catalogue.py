"""The test catalogue, analyzers and their code mappings, cached in memory (read on every message).

The cache is loaded at start and reloaded when the lab changes QC lots; catalogue edits go through
migrations, so a restart picks them up.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hospital.chassis.errors import Invalid
from hospital.lab.adapters.tables import (
    analyzer_mappings,
    instruments,
    lab_tests,
    panel_members,
    panels,
    qc_lots,
    reference_ranges,
)
from hospital.lab.domain.validation import CriticalLimits, DeltaRule, RefRange


def _d(x: float | None) -> Decimal | None:
    return None if x is None else Decimal(str(x))


@dataclass
class TestDef:
    __test__ = False
    code: str
    name_vi: str
    name_en: str
    loinc: str | None
    unit: str
    decimals: int
    value_type: str
    specimen_type: str
    tube: str
    molar_factor: Decimal | None
    critical: CriticalLimits | None
    delta: DeltaRule | None
    normal_text: str | None
    sort: int
    ranges: list[RefRange] = field(default_factory=list)


@dataclass
class Instrument:
    id: str
    name: str
    pattern: re.Pattern[str]
    protocol: str


class Catalogue:
    def __init__(self) -> None:
        self.tests: dict[str, TestDef] = {}
        self.by_loinc: dict[str, str] = {}
        self.panels: dict[str, list[str]] = {}
        self.panel_names: dict[str, str] = {}
        self.panel_by_loinc: dict[str, str] = {}
        self.instruments: list[Instrument] = []
        self.mappings: dict[tuple[str, str], tuple[str, str | None]] = {}
        self.reverse: dict[tuple[str, str], str] = {}
        self.qc_samples: set[str] = set()
        self.loaded = False

    async def load(self, s: AsyncSession) -> None:
        tests: dict[str, TestDef] = {}
        for r in (await s.execute(select(lab_tests).where(lab_tests.c.active.is_(True)))).mappings():
            crit = None
            if r["critical_low"] is not None or r["critical_high"] is not None:
                crit = CriticalLimits(_d(r["critical_low"]), _d(r["critical_high"]))
            delta = None
            if r["delta_abs"] is not None or r["delta_pct"] is not None:
                delta = DeltaRule(_d(r["delta_abs"]), _d(r["delta_pct"]), r["delta_window_hours"] or 72)
            tests[r["code"]] = TestDef(
                code=r["code"],
                name_vi=r["name_vi"],
                name_en=r["name_en"],
                loinc=r["loinc"],
                unit=r["unit"],
                decimals=r["decimals"],
                value_type=r["value_type"],
                specimen_type=r["specimen_type"],
                tube=r["tube"],
                molar_factor=_d(r["molar_factor"]),
                critical=crit,
                delta=delta,
                normal_text=r["normal_text"],
                sort=r["sort"],
            )
        for r in (await s.execute(select(reference_ranges))).mappings():
            if r["test_code"] in tests:
                tests[r["test_code"]].ranges.append(
                    RefRange(r["sex"], r["age_min_days"], r["age_max_days"], _d(r["low"]), _d(r["high"]))
                )
        self.tests = tests
        self.by_loinc = {t.loinc: t.code for t in tests.values() if t.loinc}
        members: dict[str, list[str]] = defaultdict(list)
        for r in (await s.execute(select(panel_members))).mappings():
            members[r["panel_code"]].append(r["test_code"])
        self.panels, self.panel_names, self.panel_by_loinc = {}, {}, {}
        for r in (await s.execute(select(panels))).mappings():
            self.panels[r["code"]] = sorted(
                members[r["code"]], key=lambda c: tests[c].sort if c in tests else 0
            )
            self.panel_names[r["code"]] = r["name_vi"]
            if r["loinc"]:
                self.panel_by_loinc[r["loinc"]] = r["code"]
        self.instruments = [
            Instrument(r["id"], r["name"], re.compile(r["sender_pattern"]), r["protocol"])
            for r in (await s.execute(select(instruments))).mappings()
        ]
        self.mappings, self.reverse = {}, {}
        for r in (await s.execute(select(analyzer_mappings))).mappings():
            self.mappings[(r["instrument_id"], r["analyzer_code"])] = (r["test_code"], r["analyzer_unit"])
            self.reverse.setdefault((r["instrument_id"], r["test_code"]), r["analyzer_code"])
        await self.reload_qc(s)
        self.loaded = True

    async def reload_qc(self, s: AsyncSession) -> None:
        rows = await s.execute(select(qc_lots.c.sample_id).where(qc_lots.c.active.is_(True)))
        self.qc_samples = {r.sample_id for r in rows}

    def expand(self, codes: list[str], field_name: str = "tests") -> list[TestDef]:
        """Catalogue tests for order codes: test codes, panel codes, or LOINC codes of either."""
        if not codes:
            raise Invalid("order.tests", "at least one test is required", field=field_name)
        out: dict[str, TestDef] = {}
        for raw in codes:
            code = raw.strip().upper()
            if code in self.tests:
                out[code] = self.tests[code]
            elif code in self.panels:
                out.update((c, self.tests[c]) for c in self.panels[code] if c in self.tests)
            elif raw.strip() in self.by_loinc:
                c = self.by_loinc[raw.strip()]
                out[c] = self.tests[c]
            elif raw.strip() in self.panel_by_loinc:
                out.update((c, self.tests[c]) for c in self.panels[self.panel_by_loinc[raw.strip()]])
            else:
                raise Invalid(
                    "order.unknown_test", f"no test or panel {raw!r} in the catalogue", field=field_name
                )
        return sorted(out.values(), key=lambda t: t.sort)

    def instrument_for(self, sender: str, fallback: str) -> str:
        """The instrument whose sender pattern matches ``sender`` (ASTM H-5 as sent, HL7 MSH-3)."""
        for inst in self.instruments:
            if inst.pattern.search(sender):
                return inst.id
        return (fallback or "unknown")[:40]

    def map_test(self, instrument: str, keys: list[str], loincs: list[str]) -> tuple[str | None, str | None]:
        """(catalogue test code, default analyzer unit) for an analyzer's test identifiers."""
        for key in keys:
            hit = self.mappings.get((instrument, key))
            if hit:
                return hit
        for key in keys:
            if key.upper() in self.tests and not key.startswith("^"):
                return key.upper(), None
        for loinc in loincs:
            if loinc in self.by_loinc:
                return self.by_loinc[loinc], None
        return None, None

    def analyzer_code(self, instrument: str, test_code: str) -> str:
        return self.reverse.get((instrument, test_code), test_code)
