"""Typed view of an E1394 message: H, then P (patients) → O (orders) → R (results), C, Q, M, L.

Nesting follows the standard's hierarchy. C (comment) records attach to the record they follow:
a result, an order, a patient or the header. M (manufacturer) records are kept in order of arrival on
the message. Q records (host queries) sit on the message.

Parsing is lenient about structure (an R without an O gets an order group with ``order=None``, a
missing P gets a patient group with ``patient=None``, anomalies are listed in ``warnings``) because the
raw text is stored anyway and dropping an analyzer's results is worse than storing odd ones. The only
hard failure is a message that does not begin with an H record.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from hospital.lab.api.astm.dialects import Dialect, detect_dialect, pick_component
from hospital.lab.api.astm.records import Delimiters, Record, decode_text, parse_records

_TIMESTAMP = re.compile(r"^(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})(\d{2})?)?$")


class AstmParseError(ValueError):
    """The text is not an E1394 message (no leading H record)."""


def parse_timestamp(value: str) -> datetime | None:
    """``YYYYMMDD[HHMM[SS]]`` as a naive datetime (instrument local time); None when absent or malformed."""
    match = _TIMESTAMP.match(value.strip())
    if not match:
        return None
    parts = [int(p) if p else 0 for p in match.groups()]
    try:
        return datetime(*parts)  # type: ignore[arg-type]
    except ValueError:
        return None


def parse_date(value: str) -> date | None:
    stamp = parse_timestamp(value.strip()[:8])
    return stamp.date() if stamp else None


@dataclass(frozen=True, slots=True)
class TestId:
    """E1394 universal test ID: ``universal ID^name^type^manufacturer's local code^...``.

    Analyzers use the local-code part differently: ``^^^GLU`` (component 4), Sysmex ``^^^^WBC^1``
    (component 5, then dilution), Horiba ``^^^WBC^804-5^1`` (code then LOINC), GeneXpert
    ``^MTB-RIF^^Xpert^<assay>^<version>^<analyte>^<complementary>`` (panel in component 2).
    """

    __test__ = False  # not a pytest test class despite the name

    components: tuple[str, ...]

    @property
    def code(self) -> str:
        """The instrument's test code: component 4, else the first non-empty component after it."""
        local = [c.strip() for c in self.components[3:]]
        return next((c for c in local if c), "") or next(
            (c.strip() for c in self.components if c.strip()), ""
        )

    @property
    def name(self) -> str:
        """Component 2 (universal test ID name; GeneXpert: assay panel)."""
        return self.components[1].strip() if len(self.components) > 1 else ""

    @property
    def key(self) -> str:
        """All components joined by ``^`` with trailing empty ones dropped: a stable mapping key."""
        parts = list(self.components)
        while parts and not parts[-1].strip():
            parts.pop()
        return "^".join(parts)


@dataclass(slots=True)
class Comment:
    record: Record
    sequence: str
    source: str
    text: str
    parts: tuple[str, ...]
    type: str


@dataclass(slots=True)
class Header:
    record: Record
    delimiters: Delimiters
    message_id: str
    sender: tuple[str, ...]
    receiver: str
    processing_id: str
    version: str
    timestamp: datetime | None
    comments: list[Comment] = field(default_factory=list)

    @property
    def sender_name(self) -> str:
        """First non-empty component of H-5 (``XN-550``, ``c311``, ``DPC``, ...)."""
        return next((c.strip() for c in self.sender if c.strip()), "")


@dataclass(slots=True)
class Patient:
    record: Record
    sequence: str
    practice_id: str
    laboratory_id: str
    patient_id: str
    name: tuple[str, ...]
    birth_date: date | None
    sex: str


@dataclass(slots=True)
class Order:
    record: Record
    sequence: str
    specimen_id: str
    """The barcode, per the message's dialect (see :mod:`.dialects`)."""
    specimen_field: tuple[str, ...]
    """O-3 components as sent."""
    instrument_specimen: tuple[str, ...]
    """O-4 components as sent."""
    tests: tuple[TestId, ...]
    priority: str
    requested_at: datetime | None
    collected_at: datetime | None
    action_code: str
    specimen_descriptor: str
    report_type: str


@dataclass(slots=True)
class Result:
    record: Record
    sequence: str
    test: TestId
    value: str
    """Measurement stripped of padding (first non-empty component); ``-----`` and the like kept as sent."""
    raw_value: str
    """R-4 with escapes resolved, padding and components intact."""
    units: str
    reference_range: str
    abnormal_flags: tuple[str, ...]
    abnormality_nature: str
    status: str
    operator: str
    started_at: datetime | None
    completed_at: datetime | None
    instrument: str
    comments: list[Comment] = field(default_factory=list)

    def numeric(self) -> Decimal | None:
        """The value as a Decimal when it is a plain number (``173.`` included), else None."""
        try:
            number = Decimal(self.value)
        except InvalidOperation:
            return None
        return number if number.is_finite() else None


@dataclass(slots=True)
class Query:
    record: Record
    sequence: str
    instrument: str
    """Sender name of the analyzer that asked (H-5)."""
    specimen_ids: tuple[str, ...]
    starting_range: tuple[tuple[str, ...], ...]
    ending_range: tuple[tuple[str, ...], ...]
    tests: tuple[TestId, ...]
    request_status: str


@dataclass(slots=True)
class Terminator:
    record: Record
    sequence: str
    code: str


@dataclass(slots=True)
class OrderGroup:
    order: Order | None
    results: list[Result] = field(default_factory=list)
    comments: list[Comment] = field(default_factory=list)


@dataclass(slots=True)
class PatientGroup:
    patient: Patient | None
    orders: list[OrderGroup] = field(default_factory=list)
    comments: list[Comment] = field(default_factory=list)


@dataclass(slots=True)
class AstmMessage:
    header: Header
    dialect: Dialect
    records: list[Record]
    patients: list[PatientGroup] = field(default_factory=list)
    queries: list[Query] = field(default_factory=list)
    manufacturer_records: list[Record] = field(default_factory=list)
    terminator: Terminator | None = None
    warnings: list[str] = field(default_factory=list)

    def results(self) -> Iterator[tuple[PatientGroup, OrderGroup, Result]]:
        """Every result with its patient and order group, in message order."""
        for patient in self.patients:
            for order in patient.orders:
                for result in order.results:
                    yield patient, order, result


def _flat(record: Record, n: int) -> tuple[str, ...]:
    return tuple(part for rep in record.repeats(n) for part in rep)


def _test_ids(record: Record, n: int) -> tuple[TestId, ...]:
    return tuple(TestId(tuple(rep)) for rep in record.repeats(n) if any(c.strip() for c in rep))


def _header(record: Record) -> Header:
    return Header(
        record=record,
        delimiters=record.delimiters,
        message_id=record.text(3),
        sender=tuple(record.components(5)),
        receiver=record.text(10),
        processing_id=record.text(12),
        version=record.text(13),
        timestamp=parse_timestamp(record.text(14)),
    )


def _patient(record: Record) -> Patient:
    return Patient(
        record=record,
        sequence=record.text(2),
        practice_id=record.text(3).strip(),
        laboratory_id=record.text(4).strip(),
        patient_id=record.text(5).strip(),
        name=tuple(record.components(6)),
        birth_date=parse_date(record.text(8)),
        sex=record.text(9).strip(),
    )


def _order(record: Record, dialect: Dialect) -> Order:
    specimen_field = record.components(3)
    instrument_specimen = record.components(4)
    if dialect.order_specimen_component is None:
        specimen_id = pick_component(specimen_field, None) or pick_component(instrument_specimen, None)
    else:
        specimen_id = pick_component(
            record.components(dialect.order_specimen_field), dialect.order_specimen_component
        )
    return Order(
        record=record,
        sequence=record.text(2),
        specimen_id=specimen_id,
        specimen_field=tuple(specimen_field),
        instrument_specimen=tuple(instrument_specimen),
        tests=_test_ids(record, 5),
        priority=record.text(6).strip(),
        requested_at=parse_timestamp(record.text(7)),
        collected_at=parse_timestamp(record.text(8)),
        action_code=record.text(12).strip(),
        specimen_descriptor=record.text(16).strip(),
        report_type=record.text(26).strip(),
    )


def _result(record: Record) -> Result:
    value_parts = record.components(4)
    return Result(
        record=record,
        sequence=record.text(2),
        test=TestId(tuple(record.components(3))),
        value=next((v.strip() for v in value_parts if v.strip()), ""),
        raw_value=record.text(4),
        units=record.text(5).strip(),
        reference_range=record.text(6).strip(),
        abnormal_flags=tuple(f.strip() for f in _flat(record, 7) if f.strip()),
        abnormality_nature=record.text(8).strip(),
        status=record.text(9).strip(),
        operator=record.text(11).strip(),
        started_at=parse_timestamp(record.text(12)),
        completed_at=parse_timestamp(record.text(13)),
        instrument=record.component(14, 1).strip(),
    )


def _comment(record: Record) -> Comment:
    return Comment(
        record=record,
        sequence=record.text(2),
        source=record.text(3).strip(),
        text=record.text(4),
        parts=tuple(p.strip() for p in _flat(record, 4) if p.strip()),
        type=record.text(5).strip(),
    )


def _query(record: Record, dialect: Dialect, instrument: str) -> Query:
    starting = record.repeats(3)
    ids = (pick_component(rep, dialect.query_specimen_component) for rep in starting)
    return Query(
        record=record,
        sequence=record.text(2),
        instrument=instrument,
        specimen_ids=tuple(i for i in ids if i and i.upper() != "ALL"),
        starting_range=tuple(tuple(rep) for rep in starting),
        ending_range=tuple(tuple(rep) for rep in record.repeats(4)),
        tests=_test_ids(record, 5),
        request_status=record.text(13).strip(),
    )


class _Builder:
    """Walks the records once, keeping track of where the next C or R record belongs."""

    def __init__(self, header: Header, dialect: Dialect, records: list[Record]) -> None:
        self.message = AstmMessage(header=header, dialect=dialect, records=records)
        self.comment_target: list[Comment] = header.comments

    def add(self, record: Record) -> None:
        kind = record.type
        message = self.message
        if kind == "P":
            group = PatientGroup(_patient(record))
            message.patients.append(group)
            self.comment_target = group.comments
        elif kind == "O":
            order_group = OrderGroup(_order(record, message.dialect))
            self._patient_group(record).orders.append(order_group)
            self.comment_target = order_group.comments
        elif kind == "R":
            result = _result(record)
            self._order_group(record).results.append(result)
            self.comment_target = result.comments
        elif kind == "C":
            self.comment_target.append(_comment(record))
        elif kind == "Q":
            message.queries.append(_query(record, message.dialect, message.header.sender_name))
        elif kind == "M":
            message.manufacturer_records.append(record)
        elif kind == "L":
            message.terminator = Terminator(record, record.text(2), record.text(3).strip())
        elif kind == "H":
            message.warnings.append(f"second H record ignored: {record.raw[:40]}")
        else:
            message.warnings.append(f"unknown record type {record.fields[0][:10]!r} ignored")
        if message.terminator is not None and kind != "L":
            message.warnings.append(f"record after L: {record.raw[:40]}")

    def _patient_group(self, record: Record) -> PatientGroup:
        if not self.message.patients:
            self.message.warnings.append(f"{record.type} record before any P record")
            self.message.patients.append(PatientGroup(None))
        return self.message.patients[-1]

    def _order_group(self, record: Record) -> OrderGroup:
        patient = self._patient_group(record)
        if not patient.orders:
            self.message.warnings.append("R record before any O record")
            patient.orders.append(OrderGroup(None))
        return patient.orders[-1]


def parse_message(
    data: bytes | str, *, dialect: Dialect | None = None, encoding: str = "utf-8"
) -> AstmMessage:
    """Parse one message (CR-separated records, H first) into an :class:`AstmMessage`.

    ``dialect`` defaults to the one detected from the H-5 sender field.
    """
    text = decode_text(data, encoding) if isinstance(data, bytes) else data
    records = parse_records(text)
    if not records or records[0].type != "H":
        raise AstmParseError("ASTM message does not start with an H record")
    header = _header(records[0])
    builder = _Builder(header, dialect or detect_dialect(records[0].raw_field(5)), records)
    for record in records[1:]:
        builder.add(record)
    return builder.message
