"""Answers to an analyzer's host query (Q record): the LIS's H, P, O ..., L message.

In bidirectional mode the analyzer reads a tube's barcode, sends ``Q|1|^<barcode>||ALL...`` and, after its
EOT, expects the LIS to open a transfer of its own carrying the tests to run for that tube as O records.
When the LIS knows nothing for the barcode it answers ``H`` + ``L|1|I`` ("no information available").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from hospital.lab.api.astm.dialects import GENERIC, Dialect
from hospital.lab.api.astm.records import DEFAULT_DELIMITERS, Delimiters, escape


@dataclass(frozen=True, slots=True)
class HostOrder:
    """Pending work for one specimen, as the LIS knows it (returned by the handler's ``host_query``)."""

    specimen_id: str
    tests: tuple[str, ...]
    patient_id: str = ""
    family_name: str = ""
    given_name: str = ""
    birth_date: date | None = None
    sex: str = ""
    """``M``, ``F`` or ``U``."""
    priority: str = "R"
    """``R`` routine, ``S`` stat."""


def _record(kind: str, fields: Sequence[str], d: Delimiters) -> str:
    return d.field.join([kind, *fields])


def _test_field(tests: Sequence[str], dialect: Dialect, d: Delimiters) -> str:
    pad = [""] * (dialect.test_code_component - 1)
    return d.join_repeats(d.join_components([*pad, code]) for code in tests)


def build_host_query_reply(
    orders: Sequence[HostOrder],
    *,
    now: datetime,
    delimiters: Delimiters = DEFAULT_DELIMITERS,
    dialect: Dialect = GENERIC,
    sender: str = "LIS",
    receiver: str = "",
    failed: bool = False,
) -> list[str]:
    """Records (without CR) answering a host query with ``orders``; empty ``orders`` → ``L|1|I``.

    ``failed`` answers ``H`` + ``L|1|Q`` ("error in last request for information") instead.

    Orders for the same patient that follow each other share one P record. With
    ``dialect.one_order_per_test`` each test gets its own O record (DPC Immulite).
    """
    d = delimiters

    def text(value: str) -> str:
        return escape(value, d)

    header = d.field.join(
        [
            "H",
            d.repeat + d.component + (d.escape or ""),
            "",
            "",
            text(sender),
            "",
            "",
            "",
            "",
            text(receiver),
            "",
            "P",
            "LIS2-A2",
            now.strftime("%Y%m%d%H%M%S"),
        ]
    )
    if failed:
        return [header, _record("L", ["1", "Q"], d)]
    records = [header]
    patient_key: tuple[str, str, str] | None = None
    patient_seq = order_seq = 0
    for order in orders:
        key = (order.patient_id, order.family_name, order.given_name)
        if key != patient_key:
            patient_key, patient_seq, order_seq = key, patient_seq + 1, 0
            birth = order.birth_date.strftime("%Y%m%d") if order.birth_date else ""
            records.append(
                _record(
                    "P",
                    [
                        str(patient_seq),
                        text(order.patient_id),
                        "",
                        "",
                        d.join_components([order.family_name, order.given_name]),
                        "",
                        birth,
                        text(order.sex),
                    ],
                    d,
                )
            )
        groups = [(code,) for code in order.tests] if dialect.one_order_per_test else [order.tests]
        for tests in groups:
            order_seq += 1
            records.append(
                _record(
                    "O",
                    [
                        str(order_seq),
                        text(order.specimen_id),
                        "",
                        _test_field(tests, dialect, d),
                        text(order.priority),
                        *[""] * 5,
                        "N",
                        *[""] * 13,
                        "Q",
                    ],
                    d,
                )
            )
    records.append(_record("L", ["1", "N" if orders else "I"], d))
    return records
