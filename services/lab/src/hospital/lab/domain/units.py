"""Unit normalisation: analyzers spell units their own way (``10*3/uL``, ``10E3/uL``, ``U/l``, ``um3``)
and some report conventional units (g/dL, mg/dL) where the hospital reports SI units.

:func:`canonical_unit` maps a spelling to one canonical form; :func:`convert` converts a value from one
canonical unit to another, with analyte-specific molar factors for mg/dL ↔ mmol/L or µmol/L.
"""

from __future__ import annotations

from decimal import Decimal

_ALIASES = {
    "10*3/ul": "10^9/L",
    "10^3/ul": "10^9/L",
    "10e3/ul": "10^9/L",
    "x10^3/ul": "10^9/L",
    "k/ul": "10^9/L",
    "10*9/l": "10^9/L",
    "10^9/l": "10^9/L",
    "10e9/l": "10^9/L",
    "g/l": "g/L",
    "giga/l": "10^9/L",
    "10*6/ul": "10^12/L",
    "10^6/ul": "10^12/L",
    "10e6/ul": "10^12/L",
    "m/ul": "10^12/L",
    "x10^6/ul": "10^12/L",
    "10*12/l": "10^12/L",
    "10^12/l": "10^12/L",
    "10e12/l": "10^12/L",
    "t/l": "10^12/L",
    "g/dl": "g/dL",
    "mg/dl": "mg/dL",
    "mmol/l": "mmol/L",
    "umol/l": "µmol/L",
    "µmol/l": "µmol/L",
    "μmol/l": "µmol/L",
    "u/l": "U/L",
    "iu/l": "U/L",
    "ui/l": "U/L",
    "fl": "fL",
    "um3": "fL",
    "µm3": "fL",
    "pg": "pg",
    "%": "%",
    "percnt": "%",
    "l/l": "L/L",
    "mmol/mol": "mmol/mol",
    "ng/ml": "ng/mL",
    "ug/dl": "µg/dL",
    "µg/dl": "µg/dL",
    "pmol/l": "pmol/L",
    "miu/l": "mIU/L",
    "uiu/ml": "mIU/L",
    "miu/ml": "mIU/mL",
    "iu/ml": "IU/mL",
    "pg/ml": "pg/mL",
    "": "",
}
_NON_G_PER_L = {"g/L"}  # "g/l" is grams per litre; a few Vietnamese labs write "G/L" for 10^9/L


def canonical_unit(unit: str) -> str:
    u = unit.strip()
    if u == "G/L":  # giga per litre (cell counts), as Vietnamese reports write it
        return "10^9/L"
    return _ALIASES.get(u.lower(), u)


# (from, to) → factor, valid for any analyte
_GENERIC: dict[tuple[str, str], Decimal] = {
    ("g/dL", "g/L"): Decimal(10),
    ("g/L", "g/dL"): Decimal("0.1"),
    ("%", "L/L"): Decimal("0.01"),
    ("L/L", "%"): Decimal(100),
}


class UnitError(ValueError):
    pass


def convert(value: Decimal, from_unit: str, to_unit: str, molar_factor: Decimal | None = None) -> Decimal:
    """``value`` in ``from_unit`` expressed in ``to_unit`` (canonical spellings or aliases).

    ``molar_factor`` converts mg/dL to the SI unit of the analyte (glucose 0.0555 mmol/L per mg/dL,
    creatinine 88.4 µmol/L per mg/dL, urea nitrogen 0.357 mmol/L per mg/dL, cholesterol 0.0259,
    triglycerides 0.0113). Raises :class:`UnitError` when no conversion is known.
    """
    src, dst = canonical_unit(from_unit), canonical_unit(to_unit)
    if src == dst or not src:
        return value
    if (src, dst) in _GENERIC:
        return value * _GENERIC[(src, dst)]
    if src == "mg/dL" and molar_factor is not None and dst in ("mmol/L", "µmol/L"):
        return value * molar_factor
    if dst == "mg/dL" and molar_factor is not None and src in ("mmol/L", "µmol/L"):
        return value / molar_factor
    raise UnitError(f"no conversion from {from_unit!r} to {to_unit!r}")


def format_value(value: Decimal, decimals: int) -> str:
    q = Decimal(1).scaleb(-decimals) if decimals > 0 else Decimal(1)
    return str(value.quantize(q))
