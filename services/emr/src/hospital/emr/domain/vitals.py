"""Vital signs: plausibility limits (refused outside), reference ranges (flagged L/H) and critical limits
(flagged LL/HH) for adults, and the BMI with the Asian cut-offs the Ministry of Health uses (WHO 2004:
overweight from 23, obese from 25)."""

from __future__ import annotations

from dataclasses import dataclass

from hospital.chassis.errors import Invalid


@dataclass(frozen=True)
class Limits:
    label: str  # Vietnamese, for messages
    unit: str
    plausible: tuple[float, float]
    normal: tuple[float | None, float | None]  # below low: L; above high: H
    critical: tuple[float | None, float | None]  # at or below low: LL; at or above high: HH


LIMITS: dict[str, Limits] = {
    "systolic_bp": Limits("Huyết áp tâm thu", "mmHg", (30, 300), (90, 139), (70, 180)),
    "diastolic_bp": Limits("Huyết áp tâm trương", "mmHg", (10, 200), (60, 89), (40, 120)),
    "pulse": Limits("Mạch", "lần/phút", (20, 300), (60, 100), (40, 140)),
    "temperature_c": Limits("Nhiệt độ", "°C", (25, 45), (36.0, 37.5), (35.0, 40.0)),
    "spo2": Limits("SpO2", "%", (40, 100), (95, None), (89, None)),
    "respiratory_rate": Limits("Nhịp thở", "lần/phút", (2, 80), (12, 20), (8, 30)),
    "weight_kg": Limits("Cân nặng", "kg", (0.3, 400), (None, None), (None, None)),
    "height_cm": Limits("Chiều cao", "cm", (20, 250), (None, None), (None, None)),
}
_WORDS = {"L": "thấp", "H": "cao", "LL": "thấp nguy hiểm", "HH": "cao nguy hiểm"}


@dataclass(frozen=True)
class VitalFlag:
    field: str
    flag: str
    message: str


def _fmt(value: float) -> str:
    return f"{value:g}"


def check(values: dict[str, float | int | None]) -> tuple[float | None, list[VitalFlag]]:
    """Validate the measured values (raise Invalid on an impossible one), return (BMI, flags)."""
    flags: list[VitalFlag] = []
    for name, value in values.items():
        if value is None or name not in LIMITS:
            continue
        lim = LIMITS[name]
        if not lim.plausible[0] <= value <= lim.plausible[1]:
            raise Invalid(
                "vitals.implausible",
                f"{lim.label} {_fmt(value)} {lim.unit} nằm ngoài giới hạn có thể "
                f"({_fmt(lim.plausible[0])}-{_fmt(lim.plausible[1])})",
                field=f"vitals.{name}",
            )
        flag = ""
        if lim.critical[0] is not None and value <= lim.critical[0]:
            flag = "LL"
        elif lim.critical[1] is not None and value >= lim.critical[1]:
            flag = "HH"
        elif lim.normal[0] is not None and value < lim.normal[0]:
            flag = "L"
        elif lim.normal[1] is not None and value > lim.normal[1]:
            flag = "H"
        if flag:
            flags.append(VitalFlag(name, flag, f"{lim.label} {_WORDS[flag]} ({_fmt(value)} {lim.unit})"))
    sys_, dia = values.get("systolic_bp"), values.get("diastolic_bp")
    if sys_ is not None and dia is not None and dia >= sys_:
        raise Invalid(
            "vitals.bp_order", "Huyết áp tâm trương phải thấp hơn tâm thu", field="vitals.diastolic_bp"
        )
    weight, height = values.get("weight_kg"), values.get("height_cm")
    bmi = None
    if weight and height:
        bmi = round(weight / (height / 100) ** 2, 1)
        if bmi < 18.5:
            flags.append(VitalFlag("bmi", "L", f"BMI {bmi}: thiếu cân"))
        elif bmi >= 25:
            flags.append(VitalFlag("bmi", "H", f"BMI {bmi}: béo phì (chuẩn châu Á ≥ 25)"))
        elif bmi >= 23:
            flags.append(VitalFlag("bmi", "H", f"BMI {bmi}: thừa cân (chuẩn châu Á 23-24,9)"))
    return bmi, flags
