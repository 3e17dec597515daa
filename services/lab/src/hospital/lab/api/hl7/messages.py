"""HL7 v2 lab messages: typed parsing (via the ``hl7`` library) and building of replies.

Parsed message types:

* ``ORU^R01`` (analyzer results, Mindray BC/BS v2.3.1; IHE LTW LAB-3) and ``OUL^R22`` (IHE LAW LAB-29)
  → :class:`ResultMessage`;
* ``OML^O21`` (IHE LTW LAB-1, order HIS → LIS) → :class:`OrderMessage`;
* ``QBP^Q11`` (IHE LAW LAB-27, analyzer asks for the work order of a specimen) → :class:`SpecimenQuery`.

Errors are raised as :class:`Hl7Error` carrying the acknowledgment code the sender must get: ``AR``
(reject: unparseable header, unsupported message type; also used for "cannot store now, resend") or
``AE`` (application error: the content breaks the message structure, e.g. an OBX without OBX-3), with
an HL7 table 0357 error code and a human-readable reason for MSA-3 and ERR.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

import hl7.util

SUPPORTED_TYPES = frozenset({("ORU", "R01"), ("OUL", "R22"), ("OML", "O21"), ("QBP", "Q11")})

# HL7 table 0357 (message error condition codes)
SEGMENT_SEQUENCE_ERROR = "100"
REQUIRED_FIELD_MISSING = "101"
DATA_TYPE_ERROR = "102"
UNSUPPORTED_MESSAGE_TYPE = "200"
UNSUPPORTED_EVENT_CODE = "201"
UNKNOWN_KEY = "204"
RECORD_LOCKED = "206"
APPLICATION_INTERNAL_ERROR = "207"

_ERROR_TEXT = {
    SEGMENT_SEQUENCE_ERROR: "Segment sequence error",
    REQUIRED_FIELD_MISSING: "Required field missing",
    DATA_TYPE_ERROR: "Data type error",
    UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    UNSUPPORTED_EVENT_CODE: "Unsupported event code",
    UNKNOWN_KEY: "Unknown key identifier",
    RECORD_LOCKED: "Application record locked",
    APPLICATION_INTERNAL_ERROR: "Application internal error",
}


class Hl7Error(Exception):
    """A message that cannot be accepted; ``ack_code`` is ``AE`` or ``AR``.

    ``header`` is set when the MSH could be read, so the reply can echo MSH-10.
    """

    def __init__(self, ack_code: str, error_code: str, reason: str, location: str = "") -> None:
        super().__init__(reason)
        self.ack_code = ack_code
        self.error_code = error_code
        self.reason = reason
        self.location = location
        self.header: MessageHeader | None = None


def reject(error_code: str, reason: str, location: str = "") -> Hl7Error:
    return Hl7Error("AR", error_code, reason, location)


def content_error(error_code: str, reason: str, location: str = "") -> Hl7Error:
    return Hl7Error("AE", error_code, reason, location)


@dataclass(frozen=True, slots=True)
class MessageHeader:
    encoding_characters: str
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    timestamp: datetime | None
    message_code: str
    trigger_event: str
    control_id: str
    processing_id: str
    version: str
    charset: str

    @property
    def message_type(self) -> str:
        return f"{self.message_code}^{self.trigger_event}"


@dataclass(frozen=True, slots=True)
class CodedElement:
    identifier: str
    text: str = ""
    coding_system: str = ""


@dataclass(slots=True)
class Patient:
    identifiers: tuple[str, ...]
    """PID-3 identifiers (first component of each repetition), e.g. the hospital MRN."""
    family_name: str
    given_name: str
    birth_date: date | None
    sex: str


@dataclass(slots=True)
class Observation:
    set_id: str
    value_type: str
    code: CodedElement
    sub_id: str
    value: str
    units: str
    reference_range: str
    abnormal_flags: tuple[str, ...]
    status: str
    observed_at: datetime | None
    equipment: str
    notes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ObservationRequest:
    set_id: str
    placer_order_number: str
    filler_order_number: str
    service: CodedElement
    observed_at: datetime | None
    result_status: str
    specimen_id: str
    """SPM-2 when present, else OBR-3 (where Mindray and most analyzers put the sample ID), else OBR-2."""
    observations: list[Observation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ResultMessage:
    """ORU^R01 or OUL^R22."""

    header: MessageHeader
    patient: Patient | None
    requests: list[ObservationRequest]


@dataclass(slots=True)
class OrderItem:
    order_control: str
    """ORC-1: ``NW`` new order, ``CA`` cancel the order (identified by ORC-2 / ORC-3)."""
    placer_order_number: str
    filler_order_number: str
    placer_group_number: str
    tests: list[CodedElement]
    specimen_id: str
    priority: str
    notes: list[str] = field(default_factory=list)
    reason: str = ""
    """ORC-16 (order control code reason), text or code."""

    @property
    def is_cancel(self) -> bool:
        return self.order_control.upper() == "CA"


@dataclass(slots=True)
class OrderMessage:
    """OML^O21."""

    header: MessageHeader
    patient: Patient | None
    orders: list[OrderItem]


@dataclass(slots=True)
class SpecimenQuery:
    """QBP^Q11: which work is ordered for these specimens?"""

    header: MessageHeader
    query_name: CodedElement
    query_tag: str
    specimen_ids: tuple[str, ...]
    qpd: str
    """The QPD segment as received, echoed in the RSP^K11."""


Hl7Message = ResultMessage | OrderMessage | SpecimenQuery


class _Escapes:
    """What ``hl7.util.unescape`` needs to know about a message's delimiters."""

    __slots__ = ("esc", "separators")

    def __init__(self, field: str, repeat: str, component: str, sub: str, esc: str) -> None:
        self.separators = "\r" + field + repeat + component + sub
        self.esc = esc


class Segment:
    """One segment, split on the field separator only; repetitions, components and subcomponents are
    split when a field is read. Field numbers are HL7's: MSH-1 is the field separator itself.

    This replaces ``hl7.parse`` on the ingest path (which builds a container object for every field,
    repetition and component of the message) with the same reading rules (``Segment.extract_field``):
    a path deeper than the data follows the first child, a missing part reads as empty, and values are
    unescaped with the message's escape character (MSH-1 and MSH-2 are returned as they are).
    """

    __slots__ = ("_d", "_msh", "fields", "kind")

    def __init__(self, text: str, d: _Delimiters) -> None:
        self.fields = text.split(d.field)
        self.kind = self.fields[0]
        self._msh = self.kind == "MSH"
        self._d = d
        if self._msh:
            self.fields.insert(1, d.field)

    def __len__(self) -> int:
        return len(self.fields)

    def raw(self, n: int) -> str:
        return self.fields[n] if n < len(self.fields) else ""

    def repetitions(self, n: int) -> list[str]:
        return self.raw(n).split(self._d.repeat)

    def get(self, n: int, rep: int = 1, comp: int = 1, sub: int = 1) -> str:
        if n >= len(self.fields):
            return ""
        value = self.fields[n]
        if self._msh and n <= 2:
            return value
        d = self._d
        if d.repeat in value:
            parts = value.split(d.repeat)
            if rep > len(parts):
                return ""
            value = parts[rep - 1]
        elif rep > 1:
            return ""
        if d.component in value:
            parts = value.split(d.component)
            if comp > len(parts):
                return ""
            value = parts[comp - 1]
        elif comp > 1:
            return ""
        if d.sub in value:
            parts = value.split(d.sub)
            if sub > len(parts):
                return ""
            value = parts[sub - 1]
        elif sub > 1:
            return ""
        return d.unescape(value) if d.esc in value else value


@dataclass(frozen=True, slots=True)
class _Delimiters:
    field: str = "|"
    component: str = "^"
    repeat: str = "~"
    esc: str = "\\"
    sub: str = "&"

    @classmethod
    def of(cls, text: str) -> _Delimiters:
        """From MSH-1/MSH-2, with the defaults for any that are missing (as ``hl7.parse``)."""
        sep = text[3]
        end = text.find(sep, 4)
        enc = text[4:end] if end >= 0 else text[4:]
        return cls(
            sep,
            enc[0] if len(enc) > 0 else "^",
            enc[1] if len(enc) > 1 else "~",
            enc[2] if len(enc) > 2 else "\\",
            enc[3] if len(enc) > 3 else "&",
        )

    def unescape(self, value: str) -> str:
        return str(
            hl7.util.unescape(_Escapes(self.field, self.repeat, self.component, self.sub, self.esc), value)
        )


class ParsedMessage:
    """A message split into :class:`Segment` objects."""

    __slots__ = ("segments",)

    def __init__(self, text: str) -> None:
        d = _Delimiters.of(text)
        self.segments = [Segment(t, d) for t in text.split("\r") if t]

    def __iter__(self) -> Iterator[Segment]:
        return iter(self.segments)

    def segment(self, kind: str) -> Segment:
        for seg in self.segments:
            if seg.kind == kind:
                return seg
        raise KeyError(kind)


def _get(segment: Segment, n: int, rep: int = 1, comp: int = 1, sub: int = 1) -> str:
    return segment.get(n, rep, comp, sub)


def _repeats(segment: Segment, n: int) -> list[str]:
    """First component of each non-empty repetition of field ``n``."""
    if n >= len(segment):
        return []
    values = (_get(segment, n, r) for r in range(1, len(segment.repetitions(n)) + 1))
    return [v for v in values if v]


def _coded(segment: Segment, n: int) -> CodedElement:
    return CodedElement(_get(segment, n, 1, 1), _get(segment, n, 1, 2), _get(segment, n, 1, 3))


def parse_ts(value: str) -> datetime | None:
    """HL7 DTM ``YYYYMMDD[HHMM[SS[.S]]][+ZZZZ]``, naive (offset dropped); None when malformed."""
    digits = value.split("+")[0].split("-")[0].split(".")[0]
    for fmt in ("%Y%m%d%H%M%S", "%Y%m%d%H%M", "%Y%m%d"):
        try:
            return datetime.strptime(digits, fmt)
        except ValueError:
            continue
    return None


def decode(raw: bytes) -> str:
    """Message bytes as text (UTF-8, falling back to Latin-1), segments separated by CR."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return text.replace("\r\n", "\r").replace("\n", "\r").strip("\r\x00 ")


def parse_header(text: str) -> tuple[ParsedMessage, MessageHeader]:
    """Parse the message and its MSH; anything unusable as an HL7 message raises an ``AR`` error."""
    if not text.startswith("MSH") or len(text) < 8:
        raise reject(REQUIRED_FIELD_MISSING, "message does not start with an MSH segment", "MSH")
    try:
        message = ParsedMessage(text)
        msh = message.segment("MSH")
    except Exception as exc:  # the hl7 parser raises assorted errors on garbage
        raise reject(SEGMENT_SEQUENCE_ERROR, f"unparseable HL7: {exc}", "MSH") from exc
    header = MessageHeader(
        encoding_characters=text[4:8],
        sending_application=_get(msh, 3),
        sending_facility=_get(msh, 4),
        receiving_application=_get(msh, 5),
        receiving_facility=_get(msh, 6),
        timestamp=parse_ts(_get(msh, 7)),
        message_code=_get(msh, 9, 1, 1),
        trigger_event=_get(msh, 9, 1, 2),
        control_id=_get(msh, 10),
        processing_id=_get(msh, 11),
        version=_get(msh, 12),
        charset=_get(msh, 18),
    )
    if not header.control_id:
        raise reject(REQUIRED_FIELD_MISSING, "MSH-10 (message control ID) is empty", "MSH^1^10")
    if not header.message_code:
        raise reject(REQUIRED_FIELD_MISSING, "MSH-9 (message type) is empty", "MSH^1^9")
    return message, header


def _patient(pid: Segment) -> Patient:
    born = parse_ts(_get(pid, 7))
    return Patient(
        identifiers=tuple(_repeats(pid, 3)),
        family_name=_get(pid, 5, 1, 1),
        given_name=_get(pid, 5, 1, 2),
        birth_date=born.date() if born else None,
        sex=_get(pid, 8),
    )


def _observation(obx: Segment, index: int) -> Observation:
    code = _coded(obx, 3)
    if not code.identifier:
        raise content_error(
            REQUIRED_FIELD_MISSING, f"OBX #{index}: OBX-3 (observation identifier) is empty", f"OBX^{index}^3"
        )
    value_reps = obx.repetitions(5) if len(obx) > 5 else []
    return Observation(
        set_id=_get(obx, 1),
        value_type=_get(obx, 2),
        code=code,
        sub_id=_get(obx, 4),
        value=_get(obx, 5) if len(value_reps) <= 1 else "~".join(value_reps),
        units=_get(obx, 6),
        reference_range=_get(obx, 7),
        abnormal_flags=tuple(_repeats(obx, 8)),
        status=_get(obx, 11),
        observed_at=parse_ts(_get(obx, 14)),
        equipment=_get(obx, 18),
    )


def _specimen_id(spm: Segment) -> str:
    """SPM-2 (EIP): placer-assigned identifier, else filler-assigned (component 2, first subcomponent)."""
    return _get(spm, 2, 1, 1) or _get(spm, 2, 1, 2)


def _results(message: ParsedMessage, header: MessageHeader) -> ResultMessage:
    patient: Patient | None = None
    requests: list[ObservationRequest] = []
    last_obx: Observation | None = None
    pending_specimen = ""
    spm_before_obr = header.message_code == "OUL"
    obx_count = 0
    for segment in message:
        kind = segment.kind
        if kind == "PID" and patient is None:
            patient = _patient(segment)
        elif kind == "SPM":
            specimen = _specimen_id(segment)
            if spm_before_obr or not requests:
                pending_specimen = specimen
            else:
                requests[-1].specimen_id = specimen or requests[-1].specimen_id
        elif kind == "OBR":
            requests.append(
                ObservationRequest(
                    set_id=_get(segment, 1),
                    placer_order_number=_get(segment, 2),
                    filler_order_number=_get(segment, 3),
                    service=_coded(segment, 4),
                    observed_at=parse_ts(_get(segment, 7)),
                    result_status=_get(segment, 25),
                    specimen_id=pending_specimen or _get(segment, 3) or _get(segment, 2),
                )
            )
            last_obx = None
        elif kind == "OBX":
            obx_count += 1
            if not requests:
                raise content_error(SEGMENT_SEQUENCE_ERROR, "OBX before any OBR", f"OBX^{obx_count}")
            last_obx = _observation(segment, obx_count)
            requests[-1].observations.append(last_obx)
        elif kind == "NTE":
            note = _get(segment, 3)
            if last_obx is not None:
                last_obx.notes.append(note)
            elif requests:
                requests[-1].notes.append(note)
    if not any(r.observations for r in requests):
        raise content_error(
            SEGMENT_SEQUENCE_ERROR, f"{header.message_type} carries no OBR/OBX results", "OBX"
        )
    return ResultMessage(header=header, patient=patient, requests=requests)


def _orders(message: ParsedMessage, header: MessageHeader) -> OrderMessage:
    patient: Patient | None = None
    orders: list[OrderItem] = []
    for segment in message:
        kind = segment.kind
        if kind == "PID" and patient is None:
            patient = _patient(segment)
        elif kind == "ORC":
            orders.append(
                OrderItem(
                    order_control=_get(segment, 1),
                    placer_order_number=_get(segment, 2),
                    filler_order_number=_get(segment, 3),
                    placer_group_number=_get(segment, 4),
                    tests=[],
                    specimen_id="",
                    priority=_get(segment, 7, 1, 6),
                    reason=_get(segment, 16, 1, 2) or _get(segment, 16, 1, 1),
                )
            )
        elif kind == "OBR":
            if not orders:
                raise content_error(SEGMENT_SEQUENCE_ERROR, "OBR before any ORC", "OBR")
            order = orders[-1]
            order.placer_order_number = order.placer_order_number or _get(segment, 2)
            order.filler_order_number = order.filler_order_number or _get(segment, 3)
            order.priority = order.priority or _get(segment, 5)
            test = _coded(segment, 4)
            if test.identifier:
                order.tests.append(test)
        elif kind == "SPM" and orders:
            orders[-1].specimen_id = _specimen_id(segment)
        elif kind == "NTE" and orders:
            orders[-1].notes.append(_get(segment, 3))
    if not orders or not all(o.tests or o.is_cancel for o in orders):
        raise content_error(
            REQUIRED_FIELD_MISSING, "OML^O21 needs ORC and OBR with OBR-4 for each order", "OBR^1^4"
        )
    for n, o in enumerate(orders, start=1):
        if o.is_cancel and not (o.placer_order_number or o.filler_order_number):
            raise content_error(
                REQUIRED_FIELD_MISSING,
                f"ORC #{n}: a cancellation (ORC-1 CA) needs ORC-2 or ORC-3",
                f"ORC^{n}^2",
            )
    if patient is None:
        raise content_error(SEGMENT_SEQUENCE_ERROR, "OML^O21 without PID", "PID")
    return OrderMessage(header=header, patient=patient, orders=orders)


def _query(message: ParsedMessage, header: MessageHeader, text: str) -> SpecimenQuery:
    try:
        qpd = message.segment("QPD")
    except KeyError as exc:
        raise content_error(SEGMENT_SEQUENCE_ERROR, "QBP^Q11 without QPD segment", "QPD") from exc
    specimen_ids = tuple(_repeats(qpd, 3))
    if not specimen_ids:
        raise content_error(REQUIRED_FIELD_MISSING, "QPD-3 (specimen ID) is empty", "QPD^1^3")
    raw_qpd = next(s for s in text.split("\r") if s.startswith("QPD"))
    return SpecimenQuery(
        header=header,
        query_name=_coded(qpd, 1),
        query_tag=_get(qpd, 2),
        specimen_ids=specimen_ids,
        qpd=raw_qpd,
    )


def parse_hl7(raw: bytes | str) -> Hl7Message:
    """Parse a supported lab message into its typed form, or raise :class:`Hl7Error`."""
    text = decode(raw) if isinstance(raw, bytes) else raw.replace("\r\n", "\r").replace("\n", "\r").strip()
    message, header = parse_header(text)
    try:
        kind = (header.message_code, header.trigger_event)
        if kind not in SUPPORTED_TYPES:
            known_code = header.message_code in {c for c, _ in SUPPORTED_TYPES}
            code = UNSUPPORTED_EVENT_CODE if known_code else UNSUPPORTED_MESSAGE_TYPE
            raise reject(code, f"message type {header.message_type} is not accepted here", "MSH^1^9")
        if header.message_code in ("ORU", "OUL"):
            return _results(message, header)
        if header.message_code == "OML":
            return _orders(message, header)
        return _query(message, header, text)
    except Hl7Error as error:
        error.header = header
        raise


# --- building -----------------------------------------------------------------------------------------


def escape(value: str, encoding_characters: str = "^~\\&") -> str:
    """Escape HL7 delimiters in a value (``\\F\\ \\S\\ \\R\\ \\E\\ \\T\\``)."""
    component, repeat, esc, sub = encoding_characters[:4]
    table = {esc: "E", "|": "F", component: "S", repeat: "R", sub: "T"}
    return "".join(f"{esc}{table[ch]}{esc}" if ch in table else ch for ch in value)


@dataclass(frozen=True, slots=True)
class ReplySender:
    """Who the LIS says it is in MSH-3/MSH-4 of its replies."""

    application: str = "HOSPITAL-LIS"
    facility: str = ""


def _msh(header: MessageHeader | None, message_type: str, sender: ReplySender, now: datetime) -> str:
    enc = header.encoding_characters if header else "^~\\&"
    fields = [
        "MSH",
        enc,
        escape(sender.application, enc),
        escape(sender.facility, enc),
        escape(header.sending_application, enc) if header else "",
        escape(header.sending_facility, enc) if header else "",
        now.strftime("%Y%m%d%H%M%S"),
        "",
        message_type,
        uuid.uuid4().hex[:20],
        header.processing_id if header and header.processing_id else "P",
        header.version if header and header.version else "2.5.1",
    ]
    if header and header.charset:
        fields += ["", "", "", "", "", header.charset]
    return "|".join(fields)


def _msa_err(header: MessageHeader | None, code: str, error: Hl7Error | None) -> list[str]:
    enc = header.encoding_characters if header else "^~\\&"
    control_id = escape(header.control_id, enc) if header else ""
    if error is None:
        return [f"MSA|{code}|{control_id}"]
    reason = escape(error.reason, enc)
    component = enc[0]
    err_code = component.join([error.error_code, _ERROR_TEXT.get(error.error_code, ""), "HL70357"])
    return [f"MSA|{code}|{control_id}|{reason}", f"ERR||{error.location}|{err_code}|E||||{reason}"]


def _join(segments: Iterable[str]) -> str:
    return "\r".join(segments) + "\r"


def build_ack(
    header: MessageHeader | None,
    code: str = "AA",
    *,
    error: Hl7Error | None = None,
    sender: ReplySender = ReplySender(),
    now: datetime | None = None,
) -> str:
    """General ``ACK`` (e.g. ``ACK^R01^ACK``): ``MSA|<code>|<MSH-10>`` plus MSA-3 and ERR on errors."""
    trigger = header.trigger_event if header else ""
    msh = _msh(header, f"ACK^{trigger}^ACK" if trigger else "ACK", sender, now or datetime.now())
    return _join([msh, *_msa_err(header, code, error)])


def build_orl_o22(
    message: OrderMessage,
    code: str = "AA",
    *,
    error: Hl7Error | None = None,
    sender: ReplySender = ReplySender(),
    now: datetime | None = None,
) -> str:
    """``ORL^O22`` answering an OML^O21: MSA, then one ORC per order: ``OK`` accepted / ``UA`` unable to
    accept for new orders, ``CR`` cancelled as requested / ``UC`` unable to cancel for ORC-1 ``CA``."""
    header = message.header
    enc = header.encoding_characters
    done = code == "AA"
    orcs = [
        f"ORC|{('CR' if done else 'UC') if o.is_cancel else ('OK' if done else 'UA')}|"
        f"{escape(o.placer_order_number, enc)}|{escape(o.filler_order_number, enc)}"
        for o in message.orders
    ]
    msh = _msh(header, "ORL^O22^ORL_O22", sender, now or datetime.now())
    return _join([msh, *_msa_err(header, code, error), *orcs])


def build_rsp_k11(
    query: SpecimenQuery,
    found: bool,
    *,
    error: Hl7Error | None = None,
    sender: ReplySender = ReplySender(),
    now: datetime | None = None,
) -> str:
    """``RSP^K11`` answering a QBP^Q11: MSA, QAK (``OK`` work found, ``NF`` none, or the error code), QPD.

    Per IHE LAW the work order itself travels separately (LAB-28 ``OML^O33``).
    """
    header = query.header
    enc = header.encoding_characters
    name = enc[0].join([query.query_name.identifier, query.query_name.text, query.query_name.coding_system])
    status = error.ack_code if error else "OK" if found else "NF"
    msh = _msh(header, "RSP^K11^RSP_K11", sender, now or datetime.now())
    qak = f"QAK|{escape(query.query_tag, enc)}|{status}|{name.rstrip(enc[0])}"
    return _join([msh, *_msa_err(header, error.ack_code if error else "AA", error), qak, query.qpd])


def build_oru_r01(
    *,
    sending_application: str,
    control_id: str,
    patient: Patient | None,
    requests: Sequence[ObservationRequest],
    now: datetime,
    version: str = "2.5.1",
) -> str:
    """An ``ORU^R01`` (analyzer result or LTW LAB-3) with PID, OBR, OBX and NTE segments."""
    e = escape
    segments = [
        (
            f"MSH|^~\\&|{e(sending_application)}||||{now:%Y%m%d%H%M%S}||ORU^R01^ORU_R01|"
            f"{e(control_id)}|P|{version}||||||UNICODE UTF-8"
        )
    ]
    if patient is not None:
        ids = "~".join(e(i) for i in patient.identifiers)
        born = patient.birth_date.strftime("%Y%m%d") if patient.birth_date else ""
        segments.append(
            f"PID|1||{ids}||{e(patient.family_name)}^{e(patient.given_name)}||{born}|{e(patient.sex)}"
        )
    for index, request in enumerate(requests, start=1):
        s = request.service
        observed = request.observed_at.strftime("%Y%m%d%H%M%S") if request.observed_at else ""
        segments.append(
            f"OBR|{index}|{e(request.placer_order_number)}|{e(request.specimen_id)}|"
            f"{e(s.identifier)}^{e(s.text)}^{e(s.coding_system)}|||{observed}"
            + "|" * 18
            + e(request.result_status)
        )
        segments += [f"NTE|{i}||{e(note)}" for i, note in enumerate(request.notes, start=1)]
        for number, obx in enumerate(request.observations, start=1):
            c = obx.code
            when = obx.observed_at.strftime("%Y%m%d%H%M%S") if obx.observed_at else ""
            segments.append(
                f"OBX|{number}|{e(obx.value_type)}|{e(c.identifier)}^{e(c.text)}^{e(c.coding_system)}|"
                f"{e(obx.sub_id)}|{e(obx.value)}|{e(obx.units)}|{e(obx.reference_range)}|"
                f"{'~'.join(e(f) for f in obx.abnormal_flags)}|||{e(obx.status)}|||{when}||||"
                f"{e(obx.equipment)}"
            )
            segments += [f"NTE|{i}||{e(note)}" for i, note in enumerate(obx.notes, start=1)]
    return _join(segments)
