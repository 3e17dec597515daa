"""Storage Commitment Push Model (ADR 0315): Orthanc (the OS package, in its own network namespace) asks the
gateway through its REST API ``/modalities/{id}/storage-commitment`` and receives the N-EVENT-REPORT on a
new association; a pynetdicom SCU sees instances still in the spool (object storage down) waited for, then
failed with a reason, and unknown ones failed."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt

from hospital.testing.servers import S3Server, free_port

sys.path.insert(0, str(Path(__file__).parent))
import imaging_orthanc
from imaging_helpers import indexed, run_tool, wait_for

from hospital.testing.waits import equals as _eq

COMMITMENT = "1.2.840.10008.1.20.1"
CT = "1.2.840.10008.5.1.4.1.1.2"


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[imaging_orthanc.OrthancPeer]:
    reason = imaging_orthanc.available()
    if reason:
        pytest.fail(f"Orthanc peer unavailable: {reason}")
    peer = imaging_orthanc.OrthancPeer(tmp_path_factory.mktemp("orthanc")).start()
    try:
        yield peer
    finally:
        peer.stop()


def _refs(files: list[Path]) -> list[tuple[str, str]]:
    out = []
    for f in files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        out.append((str(ds.SOPClassUID), str(ds.SOPInstanceUID)))
    return out


async def _store(host: str, port: int, directory: Path) -> None:
    res = await run_tool("storescu", "-aet", "CT_HUE", "-aec", "HOSPITAL_PACS", "+sd", host, port, directory)
    assert res.returncode == 0, res.stderr


async def test_orthanc_asks_for_storage_commitment(
    imaging_factory, orthanc, make_ct_series, tmp_path: Path
) -> None:
    files = make_ct_series(tmp_path / "ct", count=3, size=16)
    study = str(pydicom.dcmread(files[0]).StudyInstanceUID)
    unknown = (CT, generate_uid())
    async with imaging_factory(
        dicom_host=orthanc.host_side, known_aes=orthanc.known_ae, commitment_wait_seconds=1.0
    ) as svc:
        port = svc.settings.dicom_port
        await _store(orthanc.host_side, port, tmp_path / "ct")
        await wait_for(lambda: _eq(indexed(svc, study), 3))
        await asyncio.to_thread(
            orthanc.call,
            "PUT",
            "/modalities/PACS",
            {"AET": "HOSPITAL_PACS", "Host": orthanc.host_side, "Port": port},
        )

        async def ask(refs: list[tuple[str, str]]) -> dict[str, Any]:
            job = await asyncio.to_thread(
                orthanc.call,
                "POST",
                "/modalities/PACS/storage-commitment",
                {"DicomInstances": [list(r) for r in refs], "Timeout": 60},
            )

            async def finished() -> dict[str, Any] | None:
                report = await asyncio.to_thread(orthanc.get, job["Path"])
                return report if report["Status"] != "Pending" else None

            return await wait_for(finished, timeout=60)

        report = await ask(_refs(files))
        assert report["Status"] == "Success", (report, orthanc.log_tail())
        assert sorted(s["SOPInstanceUID"] for s in report["Success"]) == sorted(s for _, s in _refs(files))
        assert report["Failures"] == []

        report = await ask([*_refs(files)[:1], unknown])
        assert report["Status"] == "Failure", report
        assert [s["SOPInstanceUID"] for s in report["Success"]] == [_refs(files)[0][1]]
        assert [(f["SOPInstanceUID"], f["FailureReason"]) for f in report["Failures"]] == [
            (unknown[1], 0x0112)
        ]


class CommitmentScu:
    """A pynetdicom modality: asks for storage commitment and listens for the N-EVENT-REPORT (at once, or
    from ``listen()`` when made with ``listening=False``)."""

    def __init__(self, ae_title: str = "CT_HUE", *, listening: bool = True) -> None:
        self.ae_title, self.port = ae_title, free_port()
        self.reports: list[tuple[int, Dataset]] = []
        self.received = threading.Event()
        self.server: Any = None
        if listening:
            self.listen()

    def listen(self) -> None:
        ae = AE(ae_title=self.ae_title)
        ae.add_supported_context(COMMITMENT, scu_role=True, scp_role=True)
        self.server = ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_N_EVENT_REPORT, self._on_report)]
        )

    def _on_report(self, event: Any) -> tuple[int, None]:
        self.reports.append((event.event_type, event.event_information))
        self.received.set()
        return 0x0000, None

    def ask(self, port: int, transaction: str, refs: list[tuple[str, str]]) -> int:
        ae = AE(ae_title=self.ae_title)
        ae.add_requested_context(COMMITMENT)
        assoc = ae.associate("127.0.0.1", port, ae_title="HOSPITAL_PACS")
        assert assoc.is_established
        info = Dataset()
        info.TransactionUID = transaction
        items = []
        for cls, sop in refs:
            item = Dataset()
            item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = cls, sop
            items.append(item)
        info.ReferencedSOPSequence = items
        try:
            status, _ = assoc.send_n_action(info, 1, COMMITMENT, "1.2.840.10008.1.20.1.1")
        finally:
            assoc.release()
        return int(status.Status)

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()


async def test_spooled_instances_wait_then_fail_unknown_fail(
    imaging_factory, make_ct_series, tmp_path: Path
) -> None:
    s3 = await asyncio.to_thread(S3Server(tmp_path / "s3").start)
    scu = CommitmentScu()
    try:
        stored = make_ct_series(tmp_path / "stored", count=2, size=16)
        spooled = make_ct_series(tmp_path / "spooled", count=2, size=16)
        later = make_ct_series(tmp_path / "later", count=1, size=16)
        unknown = (CT, generate_uid())
        async with imaging_factory(
            s3=s3, known_aes=f"CT_HUE=127.0.0.1:{scu.port}", commitment_wait_seconds=2.0
        ) as svc:
            port = svc.settings.dicom_port
            await _store("127.0.0.1", port, tmp_path / "stored")
            await wait_for(lambda: _eq(indexed(svc, str(pydicom.dcmread(stored[0]).StudyInstanceUID)), 2))
            await asyncio.to_thread(s3.stop)  # what arrives now stays in the spool
            await _store("127.0.0.1", port, tmp_path / "spooled")
            transaction = generate_uid()
            status = await asyncio.to_thread(
                scu.ask, port, transaction, [*_refs(stored), *_refs(spooled), unknown]
            )
            assert status == 0x0000
            assert await asyncio.to_thread(scu.received.wait, 30)
            event_type, info = scu.reports[-1]
            assert event_type == 2 and str(info.TransactionUID) == transaction
            assert sorted(str(i.ReferencedSOPInstanceUID) for i in info.ReferencedSOPSequence) == sorted(
                s for _, s in _refs(stored)
            )
            failed = {str(i.ReferencedSOPInstanceUID): int(i.FailureReason) for i in info.FailedSOPSequence}
            assert failed == {**{s: 0x0110 for _, s in _refs(spooled)}, unknown[1]: 0x0112}

            # Asked while still in the spool, committed once the pipeline has stored and indexed it.
            scu.received.clear()
            await _store("127.0.0.1", port, tmp_path / "later")
            svc.settings.commitment_wait_seconds = 30.0
            transaction = generate_uid()
            assert await asyncio.to_thread(scu.ask, port, transaction, _refs(later)) == 0x0000
            await asyncio.to_thread(s3.start)
            assert await asyncio.to_thread(scu.received.wait, 60)
            event_type, info = scu.reports[-1]
            assert event_type == 1 and str(info.TransactionUID) == transaction
            assert [str(i.ReferencedSOPInstanceUID) for i in info.ReferencedSOPSequence] == [
                _refs(later)[0][1]
            ]
            assert "FailedSOPSequence" not in info
    finally:
        scu.stop()
        await asyncio.to_thread(s3.stop)


async def _commitments(svc) -> list[Any]:
    from sqlalchemy import select

    from hospital.imaging.adapters import tables as t

    async with svc.rt.db.session() as s:
        return (await s.execute(select(t.storage_commitments))).all()


async def test_a_pending_request_survives_a_restart_orthanc_as_scu(
    imaging_factory, orthanc, make_ct_series, tmp_path: Path
) -> None:
    """Orthanc asks for instances the gateway has not received yet; the request is recorded (waiting) and
    the gateway is stopped. After a restart the instances arrive, and Orthanc gets its N-EVENT-REPORT:
    every instance committed (ADR 0318)."""
    files = make_ct_series(tmp_path / "ct", count=3, size=16)
    refs = _refs(files)
    settings = {
        "dicom_host": orthanc.host_side,
        "dicom_port": free_port(),
        "known_aes": orthanc.known_ae,
        "commitment_wait_seconds": 120.0,
    }
    async with imaging_factory(**settings) as svc:
        port = svc.settings.dicom_port
        await asyncio.to_thread(
            orthanc.call,
            "PUT",
            "/modalities/PACS",
            {"AET": "HOSPITAL_PACS", "Host": orthanc.host_side, "Port": port},
        )
        job = await asyncio.to_thread(
            orthanc.call,
            "POST",
            "/modalities/PACS/storage-commitment",
            {"DicomInstances": [list(r) for r in refs], "Timeout": 120},
        )
        (row,) = await wait_for(lambda: _commitments(svc))
        assert (row.status, row.calling_ae, [tuple(r) for r in row.refs]) == ("waiting", "ORTHANC", refs)
    assert (await asyncio.to_thread(orthanc.get, job["Path"]))["Status"] == "Pending"

    async with imaging_factory(**settings) as svc:
        await _store(orthanc.host_side, port, tmp_path / "ct")

        async def finished() -> dict[str, Any] | None:
            report = await asyncio.to_thread(orthanc.get, job["Path"])
            return report if report["Status"] != "Pending" else None

        report = await wait_for(finished, timeout=90)
        assert report["Status"] == "Success", (report, orthanc.log_tail())
        assert sorted(i["SOPInstanceUID"] for i in report["Success"]) == sorted(sop for _, sop in refs)
        assert report["Failures"] == []

        async def reported() -> Any:  # Orthanc has it; the row says so once the association is closed
            rows = await _commitments(svc)
            return rows[0] if rows and rows[0].status == "reported" else None

        row = await wait_for(reported)
        assert (row.attempts, row.last_error) == (1, None)
        assert sorted(tuple(c) for c in row.result["committed"]) == sorted(refs)


async def test_an_undelivered_report_is_sent_after_a_restart(
    imaging_factory, make_ct_series, tmp_path: Path
) -> None:
    """The requester is not listening when the result is ready: the attempt fails and the request waits
    for its next attempt (an hour away) with the error recorded. After a restart the decided result is
    sent at once, exactly once, and the request is reported."""
    scu = CommitmentScu(listening=False)
    try:
        files = make_ct_series(tmp_path / "ct", count=2, size=16)
        study = str(pydicom.dcmread(files[0]).StudyInstanceUID)
        settings = {
            "dicom_port": free_port(),
            "known_aes": f"CT_HUE=127.0.0.1:{scu.port}",
            "commitment_retry_seconds": 3600.0,
            "commitment_report_attempts": 5,
        }
        transaction = generate_uid()
        async with imaging_factory(**settings) as svc:
            port = svc.settings.dicom_port
            await _store("127.0.0.1", port, tmp_path / "ct")
            await wait_for(lambda: _eq(indexed(svc, study), 2))
            assert await asyncio.to_thread(scu.ask, port, transaction, _refs(files)) == 0x0000

            async def failed_once() -> Any:
                rows = await _commitments(svc)
                return rows[0] if rows and rows[0].attempts == 1 else None

            row = await wait_for(failed_once)
            assert (row.status, row.transaction_uid) == ("reporting", transaction)
            assert row.last_error == "association not established"
        await asyncio.to_thread(scu.listen)
        async with imaging_factory(**settings) as svc:
            assert await asyncio.to_thread(scu.received.wait, 30)

            async def reported() -> Any:
                rows = await _commitments(svc)
                return rows[0] if rows and rows[0].status == "reported" else None

            row = await wait_for(reported)
            assert (row.attempts, row.last_error) == (2, None)
        assert len(scu.reports) == 1
        event_type, info = scu.reports[0]
        assert event_type == 1 and str(info.TransactionUID) == transaction
        assert sorted(str(i.ReferencedSOPInstanceUID) for i in info.ReferencedSOPSequence) == sorted(
            s for _, s in _refs(files)
        )
    finally:
        scu.stop()
