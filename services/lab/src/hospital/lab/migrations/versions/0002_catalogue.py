"""Seed the test catalogue: CBC, glucose, urea, creatinine, AST, ALT, electrolytes, lipids, HbA1c,
albumin, thyroid, ferritin, Xpert MTB/RIF, urinalysis; reference ranges by sex and age band; critical
limits; delta-check rules; the analyzers of the sample captures and their test-code mappings.

Ranges are common adult/child intervals used by Vietnamese provincial laboratories (SI units); each
laboratory must review them against its own methods before go-live.

Revision ID: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

EDTA = ("whole blood", "Ống EDTA (nắp tím)")
SERUM = ("serum", "Ống serum (nắp đỏ/vàng)")
FLUORIDE = ("plasma", "Ống natri fluorid (nắp xám)")
URINE = ("urine", "Cốc nước tiểu sạch")
SPUTUM = ("sputum", "Lọ đờm vô trùng")
Y18 = 18 * 365 + 4
AGE_MAX = 150 * 366

# code, name_vi, name_en, loinc, unit, decimals, type, (specimen, tube), molar, crit_lo, crit_hi,
# delta_abs, delta_pct, normal_text
TESTS = [
    ("WBC", "Số lượng bạch cầu", "White blood cell count", "6690-2", "10^9/L", 2, "NM", EDTA, None, 2.0, 30.0, None, 50.0, None),
    ("RBC", "Số lượng hồng cầu", "Red blood cell count", "789-8", "10^12/L", 2, "NM", EDTA, None, None, None, 0.8, None, None),
    ("HGB", "Huyết sắc tố (Hemoglobin)", "Hemoglobin", "718-7", "g/L", 0, "NM", EDTA, None, 70.0, 200.0, 20.0, None, None),
    ("HCT", "Hematocrit", "Hematocrit", "4544-3", "%", 1, "NM", EDTA, None, 20.0, 60.0, 6.0, None, None),
    ("MCV", "Thể tích trung bình hồng cầu (MCV)", "Mean corpuscular volume", "787-2", "fL", 1, "NM", EDTA, None, None, None, 6.0, None, None),
    ("MCH", "Lượng Hb trung bình hồng cầu (MCH)", "Mean corpuscular hemoglobin", "785-6", "pg", 1, "NM", EDTA, None, None, None, None, None, None),
    ("MCHC", "Nồng độ Hb trung bình hồng cầu (MCHC)", "Mean corpuscular hemoglobin concentration", "786-4", "g/L", 0, "NM", EDTA, None, None, None, None, None, None),
    ("PLT", "Số lượng tiểu cầu", "Platelet count", "777-3", "10^9/L", 0, "NM", EDTA, None, 20.0, 1000.0, None, 50.0, None),
    ("NEU%", "Tỷ lệ bạch cầu trung tính", "Neutrophils %", "770-8", "%", 1, "NM", EDTA, None, None, None, None, None, None),
    ("LYM%", "Tỷ lệ bạch cầu lympho", "Lymphocytes %", "736-9", "%", 1, "NM", EDTA, None, None, None, None, None, None),
    ("MON%", "Tỷ lệ bạch cầu mono", "Monocytes %", "5905-5", "%", 1, "NM", EDTA, None, None, None, None, None, None),
    ("EOS%", "Tỷ lệ bạch cầu ái toan", "Eosinophils %", "713-8", "%", 1, "NM", EDTA, None, None, None, None, None, None),
    ("BAS%", "Tỷ lệ bạch cầu ái kiềm", "Basophils %", "706-2", "%", 1, "NM", EDTA, None, None, None, None, None, None),
    ("NEU#", "Số lượng bạch cầu trung tính", "Neutrophils #", "751-8", "10^9/L", 2, "NM", EDTA, None, 0.5, None, None, None, None),
    ("LYM#", "Số lượng bạch cầu lympho", "Lymphocytes #", "731-0", "10^9/L", 2, "NM", EDTA, None, None, None, None, None, None),
    ("MON#", "Số lượng bạch cầu mono", "Monocytes #", "742-7", "10^9/L", 2, "NM", EDTA, None, None, None, None, None, None),
    ("EOS#", "Số lượng bạch cầu ái toan", "Eosinophils #", "711-2", "10^9/L", 2, "NM", EDTA, None, None, None, None, None, None),
    ("BAS#", "Số lượng bạch cầu ái kiềm", "Basophils #", "704-7", "10^9/L", 2, "NM", EDTA, None, None, None, None, None, None),
    ("RDW-CV", "Độ phân bố hồng cầu (RDW-CV)", "Red cell distribution width CV", "788-0", "%", 1, "NM", EDTA, None, None, None, None, None, None),
    ("RDW-SD", "Độ phân bố hồng cầu (RDW-SD)", "Red cell distribution width SD", "21000-5", "fL", 1, "NM", EDTA, None, None, None, None, None, None),
    ("MPV", "Thể tích trung bình tiểu cầu", "Mean platelet volume", "32623-1", "fL", 1, "NM", EDTA, None, None, None, None, None, None),
    ("GLU", "Glucose máu", "Glucose", "14749-6", "mmol/L", 1, "NM", FLUORIDE, 0.0555, 2.2, 25.0, None, 50.0, None),
    ("URE", "Urê máu", "Urea", "22664-7", "mmol/L", 1, "NM", SERUM, 0.1665, None, 35.0, None, 50.0, None),
    ("CRE", "Creatinin máu", "Creatinine", "14682-9", "µmol/L", 0, "NM", SERUM, 88.4, None, 700.0, None, 50.0, None),
    ("AST", "AST (GOT)", "Aspartate aminotransferase", "1920-8", "U/L", 0, "NM", SERUM, None, None, 1000.0, None, None, None),
    ("ALT", "ALT (GPT)", "Alanine aminotransferase", "1742-6", "U/L", 0, "NM", SERUM, None, None, 1000.0, None, None, None),
    ("NA", "Natri máu", "Sodium", "2951-2", "mmol/L", 0, "NM", SERUM, None, 120.0, 160.0, 8.0, None, None),
    ("K", "Kali máu", "Potassium", "2823-3", "mmol/L", 1, "NM", SERUM, None, 2.5, 6.5, 1.0, None, None),
    ("CL", "Clo máu", "Chloride", "2075-0", "mmol/L", 0, "NM", SERUM, None, 80.0, 120.0, 8.0, None, None),
    ("CHOL", "Cholesterol toàn phần", "Total cholesterol", "14647-2", "mmol/L", 2, "NM", SERUM, 0.02586, None, None, None, None, None),
    ("TG", "Triglycerid", "Triglycerides", "14927-8", "mmol/L", 2, "NM", SERUM, 0.01129, None, None, None, None, None),
    ("HDL", "HDL-Cholesterol", "HDL cholesterol", "14646-4", "mmol/L", 2, "NM", SERUM, 0.02586, None, None, None, None, None),
    ("LDL", "LDL-Cholesterol", "LDL cholesterol", "22748-8", "mmol/L", 2, "NM", SERUM, 0.02586, None, None, None, None, None),
    ("HBA1C", "HbA1c", "Hemoglobin A1c", "4548-4", "%", 1, "NM", EDTA, None, None, None, None, None, None),
    ("ALB", "Albumin máu", "Albumin", "1751-7", "g/L", 1, "NM", SERUM, None, 15.0, None, None, None, None),
    ("TSH", "TSH", "Thyrotropin", "3016-3", "mIU/L", 2, "NM", SERUM, None, None, None, None, None, None),
    ("FT4", "FT4 (Thyroxin tự do)", "Free thyroxine", "3024-7", "pmol/L", 1, "NM", SERUM, None, None, None, None, None, None),
    ("FT3", "FT3 (Triiodothyronin tự do)", "Free triiodothyronine", "3051-0", "pmol/L", 2, "NM", SERUM, None, None, None, None, None, None),
    ("FER", "Ferritin", "Ferritin", "2276-4", "ng/mL", 0, "NM", SERUM, None, None, None, None, None, None),
    ("MTB", "Xpert MTB/RIF Ultra (lao)", "Xpert MTB/RIF Ultra", None, "", 0, "ST", SPUTUM, None, None, None, None, None, "NOT DETECTED"),
    ("U-PH", "pH nước tiểu", "Urine pH", "5803-2", "", 1, "NM", URINE, None, None, None, None, None, None),
    ("U-SG", "Tỷ trọng nước tiểu", "Urine specific gravity", "5811-5", "", 3, "NM", URINE, None, None, None, None, None, None),
    ("U-PRO", "Protein niệu", "Urine protein", "5804-0", "", 0, "ST", URINE, None, None, None, None, None, "NEG"),
    ("U-GLU", "Glucose niệu", "Urine glucose", "5792-7", "", 0, "ST", URINE, None, None, None, None, None, "NEG"),
    ("U-KET", "Ceton niệu", "Urine ketones", "5797-6", "", 0, "ST", URINE, None, None, None, None, None, "NEG"),
    ("U-BLD", "Hồng cầu niệu", "Urine blood", "5794-3", "", 0, "ST", URINE, None, None, None, None, None, "NEG"),
    ("U-LEU", "Bạch cầu niệu", "Urine leukocyte esterase", "5799-2", "", 0, "ST", URINE, None, None, None, None, None, "NEG"),
    ("U-NIT", "Nitrit niệu", "Urine nitrite", "5802-4", "", 0, "ST", URINE, None, None, None, None, None, "NEG"),
]

# test, sex, age_min_days, age_max_days, low, high
ADULT, CHILD = (Y18, AGE_MAX), (0, Y18)
RANGES = [
    ("WBC", "any", *ADULT, 4.0, 10.0), ("WBC", "any", *CHILD, 5.0, 15.0),
    ("RBC", "male", *ADULT, 4.2, 5.4), ("RBC", "female", *ADULT, 3.8, 4.8), ("RBC", "any", *CHILD, 3.9, 5.3),
    ("HGB", "male", *ADULT, 130, 170), ("HGB", "female", *ADULT, 120, 150), ("HGB", "any", *CHILD, 110, 140),
    ("HCT", "male", *ADULT, 40, 50), ("HCT", "female", *ADULT, 36, 45), ("HCT", "any", *CHILD, 33, 42),
    ("MCV", "any", *ADULT, 80, 100), ("MCV", "any", *CHILD, 75, 95), ("MCH", "any", 0, AGE_MAX, 27, 33),
    ("MCHC", "any", 0, AGE_MAX, 320, 360), ("PLT", "any", 0, AGE_MAX, 150, 400),
    ("NEU%", "any", 0, AGE_MAX, 40, 74), ("LYM%", "any", 0, AGE_MAX, 19, 48), ("MON%", "any", 0, AGE_MAX, 3.4, 9),
    ("EOS%", "any", 0, AGE_MAX, 0, 7), ("BAS%", "any", 0, AGE_MAX, 0, 1.5),
    ("NEU#", "any", 0, AGE_MAX, 1.8, 7.7), ("LYM#", "any", 0, AGE_MAX, 1.0, 4.8), ("MON#", "any", 0, AGE_MAX, 0.1, 1.0),
    ("EOS#", "any", 0, AGE_MAX, 0, 0.5), ("BAS#", "any", 0, AGE_MAX, 0, 0.2),
    ("RDW-CV", "any", 0, AGE_MAX, 11.5, 14.5), ("RDW-SD", "any", 0, AGE_MAX, 39, 46), ("MPV", "any", 0, AGE_MAX, 7, 12),
    ("GLU", "any", 0, AGE_MAX, 3.9, 6.4), ("URE", "any", *ADULT, 2.5, 7.5), ("URE", "any", *CHILD, 1.8, 6.4),
    ("CRE", "male", *ADULT, 62, 106), ("CRE", "female", *ADULT, 44, 80), ("CRE", "any", *CHILD, 27, 62),
    ("AST", "male", 0, AGE_MAX, None, 37), ("AST", "female", 0, AGE_MAX, None, 31),
    ("ALT", "male", 0, AGE_MAX, None, 40), ("ALT", "female", 0, AGE_MAX, None, 31),
    ("NA", "any", 0, AGE_MAX, 135, 145), ("K", "any", 0, AGE_MAX, 3.5, 5.0), ("CL", "any", 0, AGE_MAX, 98, 106),
    ("CHOL", "any", 0, AGE_MAX, 3.9, 5.2), ("TG", "any", 0, AGE_MAX, 0.46, 1.88), ("HDL", "any", 0, AGE_MAX, 0.9, None),
    ("LDL", "any", 0, AGE_MAX, None, 3.4), ("HBA1C", "any", 0, AGE_MAX, 4.0, 6.0), ("ALB", "any", 0, AGE_MAX, 35, 52),
    ("TSH", "any", 0, AGE_MAX, 0.27, 4.2), ("FT4", "any", 0, AGE_MAX, 12, 22), ("FT3", "any", 0, AGE_MAX, 3.1, 6.8),
    ("FER", "male", 0, AGE_MAX, 30, 400), ("FER", "female", 0, AGE_MAX, 13, 150),
    ("U-PH", "any", 0, AGE_MAX, 5.0, 8.0), ("U-SG", "any", 0, AGE_MAX, 1.005, 1.030),
]

PANELS = [
    ("CBC", "Tổng phân tích tế bào máu ngoại vi", "Complete blood count", "58410-2",
     ["WBC", "RBC", "HGB", "HCT", "MCV", "MCH", "MCHC", "PLT", "NEU%", "LYM%", "MON%", "EOS%", "BAS%",
      "NEU#", "LYM#", "MON#", "EOS#", "BAS#", "RDW-CV", "RDW-SD", "MPV"]),
    ("ELEC", "Điện giải đồ (Na, K, Cl)", "Electrolytes panel", "24326-1", ["NA", "K", "CL"]),
    ("LIPID", "Bộ mỡ máu", "Lipid panel", "57698-3", ["CHOL", "TG", "HDL", "LDL"]),
    ("CMP", "Sinh hoá máu cơ bản", "Comprehensive metabolic panel", "24323-8",
     ["GLU", "URE", "CRE", "AST", "ALT", "NA", "K", "CL", "ALB"]),
    ("UA", "Tổng phân tích nước tiểu", "Urinalysis", "24356-8",
     ["U-PH", "U-SG", "U-PRO", "U-GLU", "U-KET", "U-BLD", "U-LEU", "U-NIT"]),
    ("THYROID", "Chức năng tuyến giáp", "Thyroid function", None, ["TSH", "FT4", "FT3"]),
]

HEMA_BASIC = {c: c for c in ("WBC", "RBC", "HGB", "HCT", "MCV", "MCH", "MCHC", "PLT", "MPV", "RDW-SD", "RDW-CV")}
HORIBA = {**HEMA_BASIC, "RDW": "RDW-CV", "RDWSD": "RDW-SD",
          **{c: c for c in ("NEU%", "LYM%", "MON%", "EOS%", "BAS%", "NEU#", "LYM#", "MON#", "EOS#", "BAS#")}}
SYSMEX_XN = {**HEMA_BASIC, "NEUT%": "NEU%", "LYMPH%": "LYM%", "MONO%": "MON%", "EO%": "EOS%", "BASO%": "BAS%",
             "NEUT#": "NEU#", "LYMPH#": "LYM#", "MONO#": "MON#", "EO#": "EOS#", "BASO#": "BAS#"}
SYSMEX_XP = {**HEMA_BASIC, "NEUT%": "NEU%", "LYM%": "LYM%", "NEUT#": "NEU#", "LYM#": "LYM#"}
# id, name, sender pattern (regex searched in ASTM H-5 / HL7 MSH-3), protocol, {analyzer code: test}
INSTRUMENTS = [
    ("pentra-xlr", "Horiba ABX Pentra XLR (huyết học)", r"^ABX\b", "astm", HORIBA),
    ("yumizen-h500", "Horiba Yumizen H500 (huyết học)", r"^H500\b", "astm", HORIBA),
    ("xn-550", "Sysmex XN-550 (huyết học)", r"XN-550", "astm", SYSMEX_XN),
    ("xp-100", "Sysmex XP-100 (huyết học)", r"XP-100", "astm", SYSMEX_XP),
    ("cobas-c111", "Roche cobas c111 (sinh hoá)", r"\bc111\b", "astm", {"413": "ALB"}),
    ("cobas-c311", "Roche cobas c311 (sinh hoá)", r"^\s*c311\b", "astm",
     {"685/": "ALT", "687/": "AST", "717/": "GLU", "690/": "CRE"}),
    ("genexpert", "Cepheid GeneXpert (sinh học phân tử)", r"GeneXpert", "astm",
     {"^MTB-RIF^^Xpert^Xpert MTB-RIF Ultra^4^MTB": "MTB"}),
    ("immulite", "Siemens DPC Immulite (miễn dịch)", r"^DPC\b", "astm",
     {"TSH": "TSH", "FT4": "FT4", "FT3": "FT3", "FER": "FER"}),
    ("mindray-bc5380", "Mindray BC-5380 (huyết học, HL7)", r"^BC-5380", "hl7",
     {"6690-2": "WBC", "789-8": "RBC", "718-7": "HGB", "777-3": "PLT"}),
    ("cobas-hl7", "Roche cobas (HL7 LAW)", r"^cobas\b", "hl7", {"14749-6": "GLU"}),
    ("simulator", "Analyzer simulator", r"^SIM-ANALYZER", "astm", {}),
]


def upgrade() -> None:
    t = sa.table("lab_tests", *(sa.column(c) for c in (
        "code", "name_vi", "name_en", "loinc", "unit", "decimals", "value_type", "specimen_type", "tube",
        "molar_factor", "critical_low", "critical_high", "delta_abs", "delta_pct", "delta_window_hours",
        "normal_text", "sort", "active")))
    op.bulk_insert(t, [
        dict(code=c, name_vi=vi, name_en=en, loinc=loinc, unit=unit, decimals=dec, value_type=vt,
             specimen_type=spec[0], tube=spec[1], molar_factor=molar, critical_low=clo, critical_high=chi,
             delta_abs=dabs, delta_pct=dpct, delta_window_hours=72 if (dabs or dpct) else None,
             normal_text=normal, sort=i, active=True)
        for i, (c, vi, en, loinc, unit, dec, vt, spec, molar, clo, chi, dabs, dpct, normal) in enumerate(TESTS)])
    r = sa.table("lab_reference_ranges", *(sa.column(c) for c in (
        "test_code", "sex", "age_min_days", "age_max_days", "low", "high")))
    op.bulk_insert(r, [dict(test_code=c, sex=s, age_min_days=a, age_max_days=b, low=lo, high=hi)
                       for c, s, a, b, lo, hi in RANGES])
    p = sa.table("lab_panels", sa.column("code"), sa.column("name_vi"), sa.column("name_en"), sa.column("loinc"))
    m = sa.table("lab_panel_members", sa.column("panel_code"), sa.column("test_code"))
    op.bulk_insert(p, [dict(code=c, name_vi=vi, name_en=en, loinc=lo) for c, vi, en, lo, _ in PANELS])
    op.bulk_insert(m, [dict(panel_code=c, test_code=t) for c, _, _, _, members in PANELS for t in members])
    i = sa.table("lab_instruments", sa.column("id"), sa.column("name"), sa.column("sender_pattern"),
                 sa.column("protocol"))
    op.bulk_insert(i, [dict(id=x, name=n, sender_pattern=pat, protocol=proto) for x, n, pat, proto, _ in INSTRUMENTS])
    am = sa.table("lab_analyzer_mappings", sa.column("instrument_id"), sa.column("analyzer_code"),
                  sa.column("test_code"), sa.column("analyzer_unit"))
    op.bulk_insert(am, [dict(instrument_id=x, analyzer_code=code, test_code=test, analyzer_unit=None)
                        for x, _, _, _, mapping in INSTRUMENTS for code, test in mapping.items()])
