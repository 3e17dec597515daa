"""Every real analyzer capture parses to the values the instrument sent."""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from hospital.lab.api.astm.message import AstmMessage, Result, parse_message
from hospital.lab.simulator import load_astm_capture


def parse_capture(samples: Path, name: str) -> AstmMessage:
    capture = load_astm_capture(samples / name)
    assert len(capture.messages) == 1
    return parse_message(capture.messages[0].text)


def results_by_code(message: AstmMessage) -> dict[str, Result]:
    return {r.test.code: r for _, _, r in message.results()}


def test_01_horiba_pentra_xlr(samples: Path) -> None:
    m = parse_capture(samples, "01_horiba_pentra_xlr_astm_frames.txt")
    assert m.header.sender_name == "ABX" and m.terminator is not None and m.terminator.code == "N"
    (group,) = m.patients
    assert group.patient is not None
    assert group.patient.name == ("Mohale", "Rita")
    assert group.patient.birth_date == date(1977, 12, 1) and group.patient.sex == "F"
    (order_group,) = group.orders
    assert order_group.order is not None and order_group.order.specimen_id == "S1234"
    assert [t.code for t in order_group.order.tests] == ["DIF"]
    r = results_by_code(m)
    assert len(r) == 21
    wbc = r["WBC"]
    assert (wbc.value, wbc.numeric(), wbc.status) == ("8.5", Decimal("8.5"), "W")
    assert wbc.test.key == "^^^WBC^804-5^1"
    assert wbc.completed_at == datetime(2022, 7, 27, 12, 15, 50)
    assert [c.parts[0] for c in wbc.comments] == ["Alarm_WBC", "LARGE IMMATURE CELL"]
    assert wbc.comments[0].parts[1:3] == ("LMNE-", "BASO+")
    bas = r["BAS#"]
    assert (bas.value, bas.numeric(), bas.abnormal_flags, bas.status) == ("-----", None, ("HH",), "X")
    assert r["MON#"].abnormal_flags == ("L",)
    assert [c.text for c in r["PLT"].comments] == ["PLATELET AGGREGATS"]
    assert (r["HGB"].value, r["PLT"].value, r["RDWSD"].value) == ("14.0", "234", "43")


def test_02_roche_cobas_c111(samples: Path) -> None:
    m = parse_capture(samples, "02_roche_cobas_c111_astm_frames.txt")
    ((_, order_group, result),) = list(m.results())
    assert order_group.order is not None
    # c111 leaves O-3 empty and transmits the sample ID in O-4
    assert order_group.order.specimen_field == ()
    assert order_group.order.specimen_id == "T20 10134GA D28"
    assert (result.test.code, result.value, result.units) == ("413", "40.13", "g/L")
    assert (result.abnormal_flags, result.status) == (("N",), "F")
    assert result.completed_at == datetime(2023, 8, 3, 13, 17)
    assert len(result.comments) == 1
    (manufacturer,) = m.manufacturer_records
    assert manufacturer.component(3, 3) == "c111" and manufacturer.text(6) == "0.018514"


def test_03_roche_cobas_c311_reassembled_frame(samples: Path) -> None:
    m = parse_capture(samples, "03_roche_cobas_c311_astm_message.txt")
    assert m.dialect.name == "roche-cobas-c311"
    ((_, order_group, _), *_) = list(m.results())
    order = order_group.order
    assert order is not None
    assert order.specimen_field[0] == "11625"  # a counter, not the barcode
    assert order.specimen_id == "CL-PL-24-0370"
    assert [t.code for t in order.tests] == ["685/", "687/", "712/", "158/", "735/", "717/", "690/"]
    r = results_by_code(m)
    expected = {
        "685/": ("22.4", "U/l", "A"),
        "687/": ("15.0", "U/l", "N"),
        "712/": ("4.1", "umol/l", "L"),
        "158/": ("301", "U/l", "N"),
        "735/": ("1.6", "umol/l", "N"),
        "717/": ("5.85", "mmol/l", "N"),
        "690/": ("34", "umol/l", "A"),
    }
    assert {code: (x.value, x.units, x.abnormal_flags[0]) for code, x in r.items()} == expected
    assert all(x.status == "F" and x.instrument == "P1" and len(x.comments) == 1 for x in r.values())
    assert r["685/"].comments[0].parts == ("43",)


def test_04_sysmex_xn550(samples: Path) -> None:
    m = parse_capture(samples, "04_sysmex_xn550_astm_message.txt")
    assert m.dialect.name == "sysmex" and m.header.sender_name == "XN-550"
    (group,) = m.patients
    assert group.patient is not None
    assert group.patient.patient_id == "37182"
    assert group.patient.birth_date == date(1987, 6, 26) and group.patient.sex == "M"
    (order_group,) = group.orders
    assert order_group.order is not None
    assert order_group.order.specimen_id == "27"  # O-4 rack^tube^sample no^attribute, space-padded
    assert len(order_group.order.tests) == 23 and order_group.order.tests[0].code == "WBC"
    results = order_group.results
    assert len(results) == 41
    r = results_by_code(m)
    assert (r["WBC"].value, r["WBC"].units, r["WBC"].test.key) == ("8.13", "10*3/uL", "^^^^WBC^1")
    assert (r["HCT"].value, r["HCT"].abnormal_flags) == ("22.7", ("L",))
    assert (r["EO%"].value, r["EO%"].abnormal_flags) == ("22.1", ("H",))
    assert (r["Eosinophilia"].value, r["Eosinophilia"].abnormal_flags) == ("", ("A",))
    # &R& is the escaped repeat delimiter inside the file reference
    assert r["SCAT_WDF"].value == "PNG\\20240628\\2024_06_27_13_54_27_WDF.PNG"
    assert r["WBC"].completed_at == datetime(2024, 6, 27, 13, 54, 7)


def test_05_horiba_yumizen_h500_with_histograms(samples: Path) -> None:
    m = parse_capture(samples, "05_horiba_yumizen_h500_astm_frames_with_histograms.txt")
    (group,) = m.patients
    (order_group,) = group.orders
    assert order_group.order is not None and order_group.order.specimen_id == "PX440N"
    assert order_group.order.requested_at == datetime(2023, 3, 29, 11, 6, 31)
    assert [c.parts for c in order_group.comments] == [
        ("CONTROL_FAILED", "PLT_ABOVE_TOLERANCE"),
        ("ABXdifftrol N",),
    ]
    assert [rec.text(3) for rec in m.manufacturer_records] == ["HISTOGRAM", "HISTOGRAM", "MATRIX", "REAGENT"]
    assert len(m.manufacturer_records[2].raw) > 26_000
    r = results_by_code(m)
    assert len(r) == 21
    wbc = r["WBC"]
    assert (wbc.value, wbc.units, wbc.test.key) == ("8.30", "10E3/uL", "^^^WBC^6690-2")
    assert wbc.reference_range == "7.30 - 9.30^REFERENCE_RANGE"
    assert (wbc.status, wbc.operator, wbc.started_at) == (
        "F",
        "MATYL^^USER",
        datetime(2023, 3, 29, 11, 6, 31),
    )
    assert (r["PLT"].value, r["HGB"].value, r["EOS%"].value) == ("308", "13.3", "5.0")


def test_06_cepheid_genexpert_custom_delimiters(samples: Path) -> None:
    m = parse_capture(samples, "06_cepheid_genexpert_astm_message.txt")
    assert (m.header.delimiters.repeat, m.header.delimiters.escape) == ("@", "\\")
    assert m.header.sender[1] == "GeneXpert"
    results = [r for _, _, r in m.results()]
    assert len(results) == 84
    (group,) = m.patients
    (order_group,) = group.orders
    assert order_group.order is not None and order_group.order.specimen_id == "PR25A137"
    main = results[0]
    assert (main.test.name, main.test.components[6], main.value) == ("MTB-RIF", "MTB", "NOT DETECTED")
    assert (main.status, main.operator, main.instrument) == ("F", "John Doe", "Cepheid-44413S0")
    assert main.completed_at == datetime(2025, 5, 14, 13, 21, 3)
    assert main.comments[0].parts == ("Notes", "Id# 118176 Sardani P Lantion CDU/Dr. A Marcil cp")
    ct = results[2]
    assert (ct.test.components[6:8], ct.value, ct.raw_value) == (("rpoB1", "Ct"), "0.0", "^0.0")
    assert [r.value for r in results if r.test.components[6:8] == ("SPC", "Ct")] == ["24.7", "24.7", "24.7"]


def test_07_sysmex_xp100_space_padded_values(samples: Path) -> None:
    m = parse_capture(samples, "07_sysmex_xp100_astm_message.txt")
    ((_, order_group, _), *_) = list(m.results())
    assert order_group.order is not None and order_group.order.specimen_id == "113"
    r = results_by_code(m)
    assert len(r) == 20
    assert (r["WBC"].raw_value, r["WBC"].value) == ("  5.5", "5.5")
    assert (r["PCT"].value, r["PCT"].units) == ("0.17", "%")
    assert (r["MCHC"].value, r["MCHC"].abnormal_flags) == ("41.7", ("H",))
    assert r["PLT"].numeric() == Decimal(170)


def test_08_immulite_results_match_the_expected_table(samples: Path) -> None:
    capture = load_astm_capture(samples / "08_siemens_dpc_immulite_astm_lis.feature")
    _query, results = capture.messages
    message = parse_message(results.text)
    assert len(results.frames) == 26  # + the ENQ's ACK = the 27 acknowledgments the feature expects
    posted = [
        {
            "id": f"{message.header.sender_name}-{order.order.specimen_id if order.order else ''}",
            "test_name": r.test.code,
            "value": r.value,
            "unit": r.units,
            "status": r.status,
            "flags": ",".join(r.abnormal_flags),
            "result_timestamp": r.completed_at,
        }
        for _, order, r in message.results()
    ]
    expected = [
        {**row, "result_timestamp": datetime.fromisoformat(row["result_timestamp"]).replace(tzinfo=None)}
        for row in capture.expected_results
    ]
    assert len(expected) == 9
    assert posted == expected
    assert [p.patient.practice_id for p in message.patients if p.patient] == [
        "119813;TGH",
        "325031;AH",
        "326829;AH",
        "124462;TGH",
        "556395;AH",
        "556357;MB",
    ]


def test_08_immulite_query_names_the_requested_specimen(samples: Path) -> None:
    capture = load_astm_capture(samples / "08_siemens_dpc_immulite_astm_lis.feature")
    message = parse_message(capture.messages[0].text)
    (query,) = message.queries
    assert query.specimen_ids == ("123ABC",) and query.instrument == "DPC"
    assert [t.code for t in query.tests] == ["ALL"]
    (pending,) = capture.pending_orders
    assert pending["id"] == "123ABC"
    assert re.split(r"[,\s]+", pending["test_names"]) == ["TSH", "FT3", "FT4", "FOO", "BAR", "BAZ"]
    assert capture.expected_reply[0].startswith("H|") and capture.expected_reply[-1] == "L|1|N"
