"""Query/Retrieve, Modality Worklist and MPPS SCPs on the gateway's AE.

pynetdicom runs handlers on association threads; the index lives behind the service's async engine,
so every handler hands its database work to the service's event loop (`Bridge.call`) and waits.
C-GET and C-MOVE read objects through the object store's blocking method on a small prefetch pool per
retrieve, a few objects ahead of the one being sent, so the association never waits on storage between
sub-operations (docs/adr/0320-imaging-read-path-cpu.md).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from io import BytesIO
from typing import Any, TypeVar

import pydicom
from pydicom import config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pynetdicom import AllStoragePresentationContexts, build_context, evt
from pynetdicom.ae import ApplicationEntity
from pynetdicom.events import Event
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ModalityPerformedProcedureStep,
    ModalityWorklistInformationFind,
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from hospital.imaging.api.dicom.contexts import STORAGE_TRANSFER_SYNTAXES
from hospital.imaging.app.access_audit import AccessAudit, dicom_entry
from hospital.imaging.app.query import QueryError, find, instances_for
from hospital.imaging.domain.matching import date_range

log = logging.getLogger(__name__)
T = TypeVar("T")

QR_FIND = (PatientRootQueryRetrieveInformationModelFind, StudyRootQueryRetrieveInformationModelFind)
QR_MOVE = (PatientRootQueryRetrieveInformationModelMove, StudyRootQueryRetrieveInformationModelMove)
QR_GET = (PatientRootQueryRetrieveInformationModelGet, StudyRootQueryRetrieveInformationModelGet)
PENDING = 0xFF00
CHARSET = "ISO_IR 192"
# Objects read ahead of the one being sent by C-GET / C-MOVE (each read and parsed on the prefetch pool).
PREFETCH = 4


class Bridge:
    """Run a coroutine on the service's event loop from an association thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float = 60.0) -> None:
        self.loop, self.timeout = loop, timeout

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(self.timeout)


def add_qr_contexts(ae: ApplicationEntity) -> None:
    for uid in (*QR_FIND, *QR_MOVE, *QR_GET, ModalityWorklistInformationFind, ModalityPerformedProcedureStep):
        ae.add_supported_context(uid)
    # C-GET: the requestor proposes storage contexts in which it is the SCP; accept that role.
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(
            cx.abstract_syntax, list(STORAGE_TRANSFER_SYNTAXES), scu_role=True, scp_role=True
        )


def _filters(identifier: Dataset) -> dict[str, str]:
    out: dict[str, str] = {}
    for elem in identifier:
        if elem.VR == "SQ" or not elem.keyword:
            continue
        value = elem.value
        if value is None or value == "":
            continue
        out[elem.keyword] = (
            "\\".join(map(str, value))
            if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue"
            else str(value)
        )
    return out


def _set(ds: Dataset, keyword: str, value: Any) -> None:
    try:
        setattr(ds, keyword, value if value is not None else "")
    except (ValueError, TypeError):
        setattr(ds, keyword, "")


@functools.lru_cache(maxsize=512)
def _tag_vr(keyword: str) -> tuple[int, str] | None:
    tag = tag_for_keyword(keyword)
    if tag is None:
        return None
    try:
        return tag, dictionary_VR(tag)
    except KeyError:
        return None


def _put(ds: Dataset, keyword: str, value: Any) -> None:
    """Set a response attribute from an index value without pydicom's per-value validation (regular
    expressions per element, the largest cost of a C-FIND response): the values come from our own
    index, already in DICOM form. Falls back to :func:`_set` for anything unusual."""
    found = _tag_vr(keyword)
    if (
        found is None
        or found[1] in ("SQ", "UN")
        or " or " in found[1]
        or (value is not None and not isinstance(value, (str, int)))
    ):
        _set(ds, keyword, value)
        return
    tag, vr = found
    try:
        ds.add(DataElement(tag, vr, "" if value is None else value, validation_mode=config.IGNORE))
    except (ValueError, TypeError):
        _set(ds, keyword, value)


class QueryRetrieveHandlers:
    def __init__(self, bridge: Bridge, rt: Any, settings: Any, orders: Any) -> None:
        self.bridge, self.rt, self.s, self.orders = bridge, rt, settings, orders
        self.audit = AccessAudit(rt)

    def _audit(self, event: Event, action: str, rows: list[Any], **detail: Any) -> None:
        """One access record, written before anything is sent (app/access_audit.py)."""
        requestor = event.assoc.requestor
        resource = next((str(r["StudyInstanceUID"]) for r in rows if r.get("StudyInstanceUID")), None)
        if len({r.get("StudyInstanceUID") for r in rows}) > 1:
            resource = None
        entry = dicom_entry(
            str(requestor.ae_title), f"{requestor.address}:{requestor.port}", action, resource, rows, **detail
        )
        self.bridge.call(self.audit.record(entry))

    def handlers(self) -> list[tuple[evt.EventType, Any]]:
        return [
            (evt.EVT_C_FIND, self.on_find),
            (evt.EVT_C_MOVE, self.on_move),
            (evt.EVT_C_GET, self.on_get),
            (evt.EVT_N_CREATE, self.on_n_create),
            (evt.EVT_N_SET, self.on_n_set),
        ]

    # ---------------------------------------------------------------- C-FIND
    def on_find(self, event: Event) -> Iterator[tuple[int, Dataset | None]]:
        model = str(event.request.AffectedSOPClassUID)
        try:
            identifier = event.identifier
        except Exception as exc:  # noqa: BLE001
            log.warning("C-FIND from %s: undecodable identifier: %s", event.assoc.requestor.ae_title, exc)
            yield 0xC310, None  # unable to process
            return
        if model == ModalityWorklistInformationFind:
            yield from self._worklist(event, identifier)
            return
        level = str(identifier.get("QueryRetrieveLevel", "")).upper()
        if level not in ("PATIENT", "STUDY", "SERIES", "IMAGE") or (
            level == "PATIENT" and model == StudyRootQueryRetrieveInformationModelFind
        ):
            log.warning("C-FIND from %s: bad QueryRetrieveLevel %r", event.assoc.requestor.ae_title, level)
            yield 0xA900, None  # identifier does not match SOP class
            return
        try:
            rows = self.bridge.call(find(self.rt.db, level, _filters(identifier), limit=self.s.find_limit))
        except QueryError as exc:
            log.warning("C-FIND from %s refused: %s", event.assoc.requestor.ae_title, exc)
            yield 0xA900, None
            return
        self._audit(event, "imaging_study.find", rows, level=level.lower(), query=_filters(identifier))
        keywords = [
            elem.keyword
            for elem in identifier
            if elem.keyword and elem.keyword not in ("SpecificCharacterSet", "QueryRetrieveLevel")
        ]
        for row in rows:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            ds = Dataset()
            ds.SpecificCharacterSet = CHARSET
            for keyword in keywords:
                _put(ds, keyword, row.get(keyword))
            ds.QueryRetrieveLevel = level
            ds.RetrieveAETitle = self.s.ae_title
            yield PENDING, ds

    def _worklist(self, event: Event, q: Dataset) -> Iterator[tuple[int, Dataset | None]]:
        sps = q.ScheduledProcedureStepSequence[0] if q.get("ScheduledProcedureStepSequence") else Dataset()
        date = str(sps.get("ScheduledProcedureStepStartDate", "") or "")
        low = high = None
        if date:
            rng = date_range(date)
            low, high = rng if rng else (date, date)
        name = str(q.get("PatientName", "") or "")
        rows = self.bridge.call(
            self.orders.worklist(
                modality=str(sps.get("Modality", "") or "") or None,
                station_ae=str(sps.get("ScheduledStationAETitle", "") or "") or None,
                date_low=low,
                date_high=high,
                patient_id=str(q.get("PatientID", "") or "") or None,
                accession=str(q.get("AccessionNumber", "") or "") or None,
                name_like=name if name and name != "*" else None,
                limit=self.s.find_limit,
            )
        )
        self._audit(
            event,
            "imaging_worklist.find",
            [{"PatientID": r.patient_id, "StudyInstanceUID": r.study_instance_uid} for r in rows],
            query=_filters(q),
            accessions=sorted({str(r.accession_number) for r in rows})[:200],
        )
        for row in rows:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield PENDING, _filter_to(worklist_item(row), q)

    # ---------------------------------------------------------------- C-MOVE / C-GET
    def _matches(self, event: Event) -> list[dict[str, Any]]:
        identifier = event.identifier
        return self.bridge.call(instances_for(self.rt.db, _filters(identifier)))

    def _load(self, key: str) -> Dataset:
        """One stored object, parsed lazily (elements stay raw until read; pynetdicom writes them back as
        they are when the agreed transfer syntax is the stored one)."""
        return pydicom.dcmread(BytesIO(self.rt.store.read_bytes(self.s.bucket, key)))

    def on_move(self, event: Event) -> Iterator[Any]:
        destination = str(event.move_destination).strip()
        peer = self.s.peers.get(destination)
        if peer is None:
            log.warning("C-MOVE from %s: unknown destination %r", event.assoc.requestor.ae_title, destination)
            yield None, None
            return
        try:
            matches = self._matches(event)
        except QueryError as exc:
            log.warning("C-MOVE refused: %s", exc)
            yield peer[0], peer[1]
            yield 0xA900, None
            return
        self._audit(
            event, "imaging_study.move", matches, destination=destination, query=_filters(event.identifier)
        )
        contexts = []
        for sop_class, ts in sorted({(m["SOPClassUID"], m["transfer_syntax_uid"]) for m in matches})[:128]:
            contexts.append(build_context(sop_class, [ts]))
        yield peer[0], peer[1], {"contexts": contexts or None}
        yield len(matches)
        yield from self._send(event, matches)

    def on_get(self, event: Event) -> Iterator[Any]:
        try:
            matches = self._matches(event)
        except QueryError as exc:
            log.warning("C-GET refused: %s", exc)
            yield 0
            return
        self._audit(event, "imaging_study.get", matches, query=_filters(event.identifier))
        yield len(matches)
        yield from self._send(event, matches)

    def _send(self, event: Event, matches: list[dict[str, Any]]) -> Iterator[tuple[int, Dataset | None]]:
        """Each match as a C-STORE sub-operation, in index order, the next PREFETCH objects read ahead
        while the current one is on the wire. A failed read ends the retrieve (out of resources) and
        nothing read ahead is sent; a cancel stops reading ahead."""
        pool = ThreadPoolExecutor(max_workers=PREFETCH, thread_name_prefix="retrieve-prefetch")
        ahead: deque[tuple[dict[str, Any], Future[Dataset]]] = deque()
        rest = iter(matches)

        def fill() -> None:
            while len(ahead) < PREFETCH:
                m = next(rest, None)
                if m is None:
                    return
                ahead.append((m, pool.submit(self._load, m["object_key"])))

        try:
            fill()
            while ahead:
                if event.is_cancelled:
                    yield 0xFE00, None
                    return
                m, future = ahead.popleft()
                try:
                    ds = future.result()
                except Exception as exc:  # noqa: BLE001 - object store unreachable: out of resources
                    log.error("retrieve %s: cannot read %s: %s", m["SOPInstanceUID"], m["object_key"], exc)
                    yield 0xA702, None
                    return
                fill()
                yield PENDING, ds
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    # ---------------------------------------------------------------- MPPS
    def on_n_create(self, event: Event) -> tuple[int, Dataset | None]:
        if str(event.request.AffectedSOPClassUID) != ModalityPerformedProcedureStep:
            return 0x0122, None
        ds = event.attribute_list
        uid = str(event.request.AffectedSOPInstanceUID or "")
        status = str(ds.get("PerformedProcedureStepStatus", "") or "")
        if not uid:
            return 0x0106, None  # invalid attribute value
        if status != "IN PROGRESS":
            log.warning("MPPS N-CREATE %s with status %r refused", uid, status)
            return 0x0106, None
        ssa = (
            ds.ScheduledStepAttributesSequence[0] if ds.get("ScheduledStepAttributesSequence") else Dataset()
        )
        accession = str(ssa.get("AccessionNumber", "") or "") or None
        link = self.bridge.call(
            self.orders.mpps_created(
                uid,
                accession,
                str(ssa.get("StudyInstanceUID", "") or "") or None,
                status,
                patient_id=str(ds.get("PatientID", "") or "") or None,
                patient_name=str(ds.get("PatientName", "") or "") or None,
                calling_ae=str(event.assoc.requestor.ae_title).strip() or None,
            )
        )
        # Always success: the modality did perform the step, and a refusal would only make it retry.
        calling = event.assoc.requestor.ae_title
        if link.order_id is None:
            log.warning(
                "MPPS %s IN PROGRESS from %s matches no order: kept for review (GET /api/v1/mpps)",
                uid,
                calling,
            )
        elif link.attention == "order_cancelled":
            log.warning(
                "MPPS %s IN PROGRESS from %s names order %s (accession %s), which was cancelled: the "
                "order stays cancelled, nothing is published; kept for review "
                "(GET /api/v1/mpps?unmatched=true, attention order_cancelled)",
                uid,
                calling,
                link.order_id,
                accession,
            )
        elif link.attention == "already_completed":
            log.warning(
                "MPPS %s IN PROGRESS from %s names order %s (accession %s), which is already completed: "
                "the order stays completed, nothing is published; kept for review "
                "(GET /api/v1/mpps?unmatched=true, attention already_completed)",
                uid,
                calling,
                link.order_id,
                accession,
            )
        elif link.attention == "redo_discontinued":
            log.warning(
                "MPPS %s IN PROGRESS from %s redoes order %s (accession %s), which was discontinued: the "
                "order is in progress again; its charge was reversed, kept for review "
                "(GET /api/v1/mpps?unmatched=true, attention redo_discontinued)",
                uid,
                calling,
                link.order_id,
                accession,
            )
        else:
            log.info("MPPS %s IN PROGRESS from %s (order %s)", uid, calling, link.order_id)
        return 0x0000, ds

    def on_n_set(self, event: Event) -> tuple[int, Dataset | None]:
        ds = event.modification_list
        uid = str(event.request.RequestedSOPInstanceUID or "")
        status = str(ds.get("PerformedProcedureStepStatus", "") or "")
        study_uid = None
        link = self.bridge.call(self.orders.mpps_set(uid, status, study_uid))
        if link is None:
            log.warning("MPPS N-SET for unknown instance %s", uid)
            return 0x0112, None  # no such SOP instance
        if link.attention == "order_cancelled":
            log.warning(
                "MPPS %s %s names order %s, which was cancelled: the order stays cancelled and "
                "imaging.procedure.completed is not published; kept for review "
                "(GET /api/v1/mpps?unmatched=true, attention order_cancelled)",
                uid,
                status or "updated",
                link.order_id,
            )
        elif link.attention in ("already_completed", "superseded"):
            log.warning(
                "MPPS %s %s for order %s is not applied (%s): the order keeps its status and "
                "imaging.procedure.completed is not published; kept for review "
                "(GET /api/v1/mpps?unmatched=true)",
                uid,
                status or "updated",
                link.order_id,
                "the order was already completed"
                if link.attention == "already_completed"
                else "a newer MPPS has taken over the order",
            )
        else:
            log.info("MPPS %s %s (order %s)", uid, status or "updated", link.order_id or "none: unmatched")
        return 0x0000, ds


def worklist_item(row: Any) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = CHARSET
    ds.AccessionNumber = row.accession_number
    ds.ReferringPhysicianName = row.referring_physician or ""
    ds.PatientName = row.patient_name
    ds.PatientID = row.patient_id
    ds.PatientBirthDate = row.patient_birth_date or ""
    ds.PatientSex = row.patient_sex or ""
    ds.StudyInstanceUID = row.study_instance_uid
    ds.RequestedProcedureID = row.requested_procedure_id
    ds.RequestedProcedureDescription = row.requested_procedure_description
    sps = Dataset()
    sps.Modality = row.modality
    sps.ScheduledStationAETitle = row.station_ae_title or ""
    from hospital.imaging.app.orders import VN

    local = row.scheduled_start.astimezone(VN)
    sps.ScheduledProcedureStepStartDate = local.strftime("%Y%m%d")
    sps.ScheduledProcedureStepStartTime = local.strftime("%H%M%S")
    sps.ScheduledProcedureStepDescription = row.requested_procedure_description
    sps.ScheduledProcedureStepID = row.accession_number
    sps.ScheduledPerformingPhysicianName = ""
    ds.ScheduledProcedureStepSequence = [sps]
    return ds


def _filter_to(full: Dataset, query: Dataset) -> Dataset:
    """Return the requested keys only (with empty values for keys we do not hold)."""
    out = Dataset()
    out.SpecificCharacterSet = CHARSET
    for elem in query:
        kw = elem.keyword
        if not kw or kw == "SpecificCharacterSet":
            continue
        if elem.VR == "SQ":
            have = full.get(kw)
            if have:
                items = []
                for item in have:
                    wanted = elem.value[0] if elem.value else None
                    items.append(_filter_to(item, wanted) if wanted is not None and len(wanted) else item)
                    if "SpecificCharacterSet" in items[-1]:
                        del items[-1].SpecificCharacterSet
                setattr(out, kw, items)
            else:
                setattr(out, kw, [])
        else:
            _set(out, kw, full.get(kw, ""))
    return out
