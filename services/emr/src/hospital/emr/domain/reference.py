"""Which department each inpatient ward belongs to. Admissions owns the hospital's reference data and its
admission events carry the ward only; until a reference-data contract exists this is the same layout as
admissions' (services/admissions/.../domain/reference.py), and an unknown ward is its own department."""

from __future__ import annotations

WARD_DEPARTMENT: dict[str, str] = {
    "NOI": "NTH",
    "CC": "CC",
    "TNH": "TN",
    "HSTC": "HSTC",
    "TIM": "NTM",
    "TKI": "NTK",
    "NTI": "NTT",
    "NGO": "NGTH",
    "CTC": "CTCH",
    "NGK": "NGTK",
    "HSM": "PTGM",
    "SAN": "SAN",
    "NHI": "NHI",
    "SSI": "NHI",
    "UBU": "UB",
    "YHC": "YHCT",
    "PHC": "PHCN",
    "TMH": "TMH",
    "RHM": "RHM",
    "MAT": "MAT",
    "DLI": "DL",
}


def ward_department(ward_code: str) -> str:
    return WARD_DEPARTMENT.get(ward_code, ward_code)
