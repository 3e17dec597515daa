"""C-STORE SCP hot path: received bytes -> durable spool entry -> status.

The data set is never decoded as a whole. The handler takes the raw bytes of
the request (``event.request.DataSet``, encoded in the accepted transfer
syntax) and a hand-made Part 10 header; the index attributes are parsed from
that pair in memory, up to Pixel Data, without copying the data set. Refused
instances never touch the disk. Accepted ones are written to the spool as
header + received bytes, unchanged, and success (0x0000) is returned only
after the spool commit (fsync + link + directory fsync): a success status
always means the instance survives a crash.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from pydicom.dataset import Dataset
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event

from hospital.imaging.adapters.spool import Spool, SpoolEntry, SpoolOutcome
from hospital.imaging.domain.header import HeaderError, InstanceIndex, read_index_attributes
from hospital.imaging.domain.instance_checks import Problem, check_received_instance, is_valid_uid
from hospital.imaging.domain.part10 import Part10View, build_file_header
from hospital.imaging.domain.pixel_checks import check_pixel_data

logger = logging.getLogger(__name__)

# (0000,0902) Error Comment is LO: at most 64 characters.
_MAX_ERROR_COMMENT = 64


class StoreStatus(enum.IntEnum):
    """C-STORE response statuses used by the gateway (PS3.4 B.2.3)."""

    SUCCESS = 0x0000
    #: Refused: Out of Resources.
    OUT_OF_RESOURCES = 0xA700
    #: Error: Data Set does not match SOP Class.
    DATASET_MISMATCH = 0xA900
    #: Error: Cannot understand.
    CANNOT_UNDERSTAND = 0xC000


_STATUS_FOR_PROBLEM = {
    Problem.MISMATCH: StoreStatus.DATASET_MISMATCH,
    Problem.MALFORMED: StoreStatus.CANNOT_UNDERSTAND,
}


@dataclass(frozen=True, slots=True)
class StoredInstance:
    """What the gateway reports for every instance it acknowledged."""

    outcome: SpoolOutcome
    entry: SpoolEntry
    index: InstanceIndex
    calling_ae_title: str


OnStored = Callable[[StoredInstance], None]


def _failure(status: StoreStatus, reason: str) -> Dataset:
    response = Dataset()
    response.Status = int(status)
    response.ErrorComment = reason[:_MAX_ERROR_COMMENT]
    return response


class StoreHandler:
    """Handler for ``evt.EVT_C_STORE``; one instance serves all associations.

    `on_stored` runs on the association's thread after the instance is
    durable and before the response is sent: keep it quick (enqueue, notify).
    Its exceptions are logged and do not change the status, since the
    instance is already safe in the spool.
    """

    def __init__(self, spool: Spool, on_stored: OnStored | None = None) -> None:
        self._spool = spool
        self._on_stored = on_stored

    def __call__(self, event: Event) -> int | Dataset:
        request = cast(C_STORE, event.request)
        if request.DataSet is None:
            status, comment = self._refuse(
                event.assoc.requestor.ae_title,
                str(request.AffectedSOPInstanceUID),
                StoreStatus.CANNOT_UNDERSTAND,
                "no data set",
            )
            return _failure(status, comment)
        with request.DataSet.getbuffer() as dataset:
            status, comment = self.store(
                calling_ae=event.assoc.requestor.ae_title,
                sop_class_uid=str(request.AffectedSOPClassUID),
                sop_instance_uid=str(request.AffectedSOPInstanceUID),
                transfer_syntax_uid=str(event.context.transfer_syntax),
                dataset=dataset,
            )
        return int(status) if comment is None else _failure(status, comment)

    def store(
        self,
        *,
        calling_ae: str,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax_uid: str,
        dataset: bytes | bytearray | memoryview,
    ) -> tuple[StoreStatus, str | None]:
        """Check, spool durably and report one received data set; ``(status, error comment or None)``.

        Shared by the pynetdicom handler and the lean receiver (:mod:`.lean`): success only once the
        instance is fsync'd in the spool; a refusal writes nothing.
        """
        calling_ae = calling_ae.strip()
        if not is_valid_uid(sop_instance_uid) or not is_valid_uid(sop_class_uid):
            return self._refuse(
                calling_ae, sop_instance_uid, StoreStatus.CANNOT_UNDERSTAND, "invalid UID in request"
            )
        file_header = build_file_header(
            sop_class_uid=sop_class_uid,
            sop_instance_uid=sop_instance_uid,
            transfer_syntax_uid=transfer_syntax_uid,
            source_ae_title=calling_ae,
        )
        try:
            with Part10View(file_header, dataset) as part10:
                index = read_index_attributes(part10)
        except HeaderError as exc:
            return self._refuse(calling_ae, sop_instance_uid, StoreStatus.CANNOT_UNDERSTAND, str(exc))
        rejection = check_received_instance(
            index, affected_sop_class_uid=sop_class_uid, affected_sop_instance_uid=sop_instance_uid
        )
        if rejection is not None:
            return self._refuse(
                calling_ae, sop_instance_uid, _STATUS_FOR_PROBLEM[rejection.problem], rejection.reason
            )
        broken = check_pixel_data(transfer_syntax_uid, dataset)
        if broken is not None:
            return self._refuse(calling_ae, sop_instance_uid, StoreStatus.CANNOT_UNDERSTAND, broken)
        try:
            with self._spool.stage() as staged:
                staged.write(file_header)
                staged.write(dataset)
                result = staged.commit(sop_instance_uid)
        except OSError as exc:
            logger.exception("C-STORE %s from %s: spool write failed", sop_instance_uid, calling_ae)
            return StoreStatus.OUT_OF_RESOURCES, f"storage error: {exc.strerror or exc}"[:_MAX_ERROR_COMMENT]

        if result.outcome is SpoolOutcome.CONFLICT:
            logger.warning(
                "C-STORE %s from %s: differs from the pending copy, kept as conflict %s",
                sop_instance_uid,
                calling_ae,
                result.entry.path.name,
            )
        else:
            logger.debug("C-STORE %s from %s: %s", sop_instance_uid, calling_ae, result.outcome.value)
        if self._on_stored is not None:
            try:
                self._on_stored(StoredInstance(result.outcome, result.entry, index, calling_ae))
            except Exception:
                logger.exception("on_stored callback failed for %s (instance is spooled)", sop_instance_uid)
        return StoreStatus.SUCCESS, None

    @staticmethod
    def _refuse(
        calling_ae: str, sop_instance_uid: str, status: StoreStatus, reason: str
    ) -> tuple[StoreStatus, str]:
        logger.warning(
            "C-STORE %s from %s refused with 0x%04X: %s", sop_instance_uid, calling_ae, status, reason
        )
        return status, reason[:_MAX_ERROR_COMMENT]
