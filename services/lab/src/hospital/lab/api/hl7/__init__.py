"""HL7 v2 over MLLP: framing, asyncio server, lab message parsing and reply building."""

from hospital.lab.api.hl7.messages import (
    Hl7Error,
    Hl7Message,
    OrderMessage,
    ResultMessage,
    SpecimenQuery,
    build_ack,
    build_orl_o22,
    build_oru_r01,
    build_rsp_k11,
    parse_hl7,
)
from hospital.lab.api.hl7.mllp import Hl7Handler, MllpBuffer, MllpEndpoint, MllpServer, frame

__all__ = [
    "Hl7Error",
    "Hl7Handler",
    "Hl7Message",
    "MllpBuffer",
    "MllpEndpoint",
    "MllpServer",
    "OrderMessage",
    "ResultMessage",
    "SpecimenQuery",
    "build_ack",
    "build_orl_o22",
    "build_oru_r01",
    "build_rsp_k11",
    "frame",
    "parse_hl7",
]
