"""HL7 v2 lab message parsing and reply building."""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING

import hl7
import pytest

from hospital.lab.api.hl7.messages import (
    Hl7Error,
    OrderMessage,
    ResultMessage,
    SpecimenQuery,
    build_ack,
    build_orl_o22,
    build_oru_r01,
    build_rsp_k11,
    escape,
    parse_header,
    parse_hl7,
)

if TYPE_CHECKING:
    from conftest import Hl7Samples


def segment(text: str, name: str) -> str:
    return next(s for s in text.split("\r") if s.startswith(name))


def test_oru_r01_from_a_mindray_analyzer(hl7_samples: Hl7Samples) -> None:
    message = parse_hl7(hl7_samples.oru_r01.encode("utf-8"))
    assert isinstance(message, ResultMessage)
    assert message.header.message_type == "ORU^R01" and message.header.version == "2.3.1"
    assert message.patient is not None
    assert (message.patient.family_name, message.patient.given_name) == ("Nguyễn", "Thị Hoa")
    assert message.patient.identifiers == ("BN240001",) and message.patient.birth_date == date(1985, 3, 14)
    (request,) = message.requests
    assert request.specimen_id == "24070512345" and request.service.identifier == "00001"
    assert request.observed_at == datetime(2024, 7, 5, 10, 15)
    wbc, hgb, plt = request.observations
    assert (wbc.code.identifier, wbc.code.text, wbc.code.coding_system) == ("6690-2", "WBC", "LN")
    assert (wbc.value, wbc.units, wbc.reference_range, wbc.abnormal_flags, wbc.status) == (
        "12.5",
        "10*9/L",
        "4.0-10.0",
        ("H",),
        "F",
    )
    assert wbc.observed_at == datetime(2024, 7, 5, 10, 20)
    assert (hgb.value, hgb.abnormal_flags) == ("135", ("N",))
    assert plt.abnormal_flags == ("L", "LL")
    assert plt.notes == ["Tiểu cầu giảm, đề nghị kiểm tra lại"]


def test_lf_separated_latin1_message_is_accepted() -> None:
    latin1 = (
        "MSH|^~\\&|BS-240|Mindray|||20240705103000||ORU^R01|1002|P|2.3.1||||||8859/1\n"
        "PID|1||BN9||Müller^Rudolph\nOBR|1||S9|GLU\nOBX|1|NM|GLU^Glucose||5.2|mmol/L\n"
    ).encode("latin-1")
    message = parse_hl7(latin1)
    assert isinstance(message, ResultMessage) and message.patient is not None
    assert message.patient.family_name == "Müller"
    assert message.requests[0].observations[0].value == "5.2"


def test_oul_r22_takes_the_specimen_from_spm(hl7_samples: Hl7Samples) -> None:
    message = parse_hl7(hl7_samples.oul_r22)
    assert isinstance(message, ResultMessage)
    (request,) = message.requests
    assert (request.specimen_id, request.placer_order_number, request.filler_order_number) == (
        "24070500042",
        "PL0042",
        "FL0042",
    )
    (obx,) = request.observations
    assert (obx.code.identifier, obx.value, obx.units, obx.abnormal_flags) == (
        "14749-6",
        "7.8",
        "mmol/L",
        ("H",),
    )
    assert (obx.equipment, obx.sub_id, obx.notes) == ("cobas-c311", "1", ["Mẫu hơi vỡ hồng cầu"])


def test_oml_o21_order_fields(hl7_samples: Hl7Samples) -> None:
    message = parse_hl7(hl7_samples.oml_o21)
    assert isinstance(message, OrderMessage)
    assert message.patient is not None and message.patient.identifiers == ("BN240003", "012345678901")
    assert (message.patient.family_name, message.patient.sex) == ("Lê", "F")
    first, second = message.orders
    assert (first.order_control, first.placer_order_number, first.filler_order_number) == (
        "NW",
        "PO-778899",
        "FO-2024-0001",
    )
    assert (first.placer_group_number, first.priority, first.specimen_id) == ("GRP-01", "S", "24070500077")
    assert [t.identifier for t in first.tests] == ["58410-2"]
    assert (second.placer_order_number, second.filler_order_number, second.specimen_id) == (
        "PO-778900",
        "",
        "24070500078",
    )
    assert second.tests[0].text == "Comprehensive metabolic panel"
    assert second.notes == ["Bệnh nhân nhịn ăn từ 22 giờ"]


def test_qbp_q11_specimen_query(hl7_samples: Hl7Samples) -> None:
    query = parse_hl7(hl7_samples.qbp_q11)
    assert isinstance(query, SpecimenQuery)
    assert query.specimen_ids == ("24070500077",) and query.query_tag == "Q0001"
    assert query.query_name.identifier == "WOS"


@pytest.mark.parametrize(
    ("text", "ack", "code", "reason"),
    [
        ("hello world", "AR", "101", "does not start with an MSH"),
        ("MSH|^~\\&|A|B|C|D|20240705||ORU^R01||P|2.5.1\rOBR|1\r", "AR", "101", "MSH-10"),
        ("MSH|^~\\&|A|B|C|D|20240705||ADT^A01|X1|P|2.5.1\rPID|1\r", "AR", "200", "ADT^A01"),
        ("MSH|^~\\&|A|B|C|D|20240705||ORU^R30|X2|P|2.5.1\r", "AR", "201", "ORU^R30"),
        (
            "MSH|^~\\&|A|B|C|D|20240705||ORU^R01|X3|P|2.5.1\rOBX|1|NM|718-7||1\r",
            "AE",
            "100",
            "OBX before any OBR",
        ),
        (
            "MSH|^~\\&|A|B|C|D|20240705||ORU^R01|X4|P|2.5.1\rOBR|1||S1|CBC\rOBX|1|NM|||1\r",
            "AE",
            "101",
            "OBX-3",
        ),
        ("MSH|^~\\&|A|B|C|D|20240705||ORU^R01|X5|P|2.5.1\rPID|1\rOBR|1||S1|CBC\r", "AE", "100", "no OBR/OBX"),
        ("MSH|^~\\&|A|B|C|D|20240705||QBP^Q11|X6|P|2.5.1\rRCP|I\r", "AE", "100", "QPD"),
        ("MSH|^~\\&|A|B|C|D|20240705||OML^O21|X7|P|2.5.1\rPID|1\rORC|NW|P1\r", "AE", "101", "OBR-4"),
    ],
)
def test_malformed_messages_are_classified(text: str, ack: str, code: str, reason: str) -> None:
    with pytest.raises(Hl7Error) as caught:
        parse_hl7(text)
    assert (caught.value.ack_code, caught.value.error_code) == (ack, code)
    assert reason in caught.value.reason


def test_ack_carries_the_control_id_and_the_error_reason(hl7_samples: Hl7Samples) -> None:
    _, header = parse_header(hl7_samples.oru_r01)
    ok = build_ack(header, now=datetime(2024, 7, 5, 10, 31))
    parsed = hl7.parse(ok)
    assert str(parsed.segment("MSH")(9)) == "ACK^R01^ACK"
    assert (str(parsed.segment("MSH")(5)), str(parsed.segment("MSH")(12))) == ("BC-5380", "2.3.1")
    assert segment(ok, "MSA") == "MSA|AA|1001"
    error = Hl7Error("AE", "101", "OBX #2: OBX-3 is empty | sent by ^analyzer^", "OBX^2^3")
    failed = build_ack(header, "AE", error=error)
    assert segment(failed, "MSA") == "MSA|AE|1001|OBX #2: OBX-3 is empty \\F\\ sent by \\S\\analyzer\\S\\"
    err = hl7.parse(failed).segment("ERR")
    assert (str(err(2)), str(err(3)), str(err(4))) == ("OBX^2^3", "101^Required field missing^HL70357", "E")


def test_orl_o22_and_rsp_k11(hl7_samples: Hl7Samples) -> None:
    order = parse_hl7(hl7_samples.oml_o21)
    assert isinstance(order, OrderMessage)
    orl = build_orl_o22(order)
    assert "ORL^O22^ORL_O22" in segment(orl, "MSH")
    assert segment(orl, "MSA") == "MSA|AA|OML0001"
    assert [s for s in orl.split("\r") if s.startswith("ORC")] == [
        "ORC|OK|PO-778899|FO-2024-0001",
        "ORC|OK|PO-778900|",
    ]
    query = parse_hl7(hl7_samples.qbp_q11)
    assert isinstance(query, SpecimenQuery)
    found, missing = build_rsp_k11(query, True), build_rsp_k11(query, False)
    assert segment(found, "QAK") == "QAK|Q0001|OK|WOS^Work Order Step^IHE_LABTF"
    assert segment(missing, "QAK").split("|")[2] == "NF"
    assert segment(found, "QPD") == "QPD|WOS^Work Order Step^IHE_LABTF|Q0001|24070500077"
    assert segment(found, "MSA") == "MSA|AA|QBP0001"


def test_oru_builder_round_trips(hl7_samples: Hl7Samples) -> None:
    original = parse_hl7(hl7_samples.oru_r01)
    assert isinstance(original, ResultMessage)
    rebuilt = build_oru_r01(
        sending_application="LIS^LAB",
        control_id="C1",
        patient=original.patient,
        requests=original.requests,
        now=datetime(2024, 7, 5, 11, 0),
    )
    again = parse_hl7(rebuilt)
    assert isinstance(again, ResultMessage)
    assert again.header.sending_application == "LIS^LAB"
    assert again.patient == original.patient
    assert again.requests[0].observations == original.requests[0].observations
    assert again.requests[0].specimen_id == original.requests[0].specimen_id


def test_escape_uses_the_message_encoding_characters() -> None:
    assert escape("a|b^c~d\\e&f") == "a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f"
    assert escape("x#y", "#~\\&") == "x\\S\\y"
