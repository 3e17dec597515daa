"""Storage associations handed to receiver processes (api/dicom/receivers.py, receiver.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)

from hospital.imaging.adapters.spool import Spool
from hospital.imaging.api.dicom import DicomConfig
from hospital.imaging.api.dicom.receivers import (
    ReceiverPool,
    is_storage_only,
    peek_association_request,
    proposed_abstract_syntaxes,
    receiver_options,
)
from hospital.imaging.api.dicom.server import build_ae, gateway_handlers, serve

PACS_AE = "HOSPITAL_PACS"


def _captured_request(*abstract_syntaxes: str) -> bytes:
    """The A-ASSOCIATE-RQ pynetdicom sends when proposing `abstract_syntaxes` (peeked, as the listener
    does)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    ae = AE(ae_title="SCU")
    ae.acse_timeout = 2
    for uid in abstract_syntaxes:
        ae.add_requested_context(uid)
    thread = threading.Thread(target=lambda: ae.associate("127.0.0.1", port, ae_title=PACS_AE), daemon=True)
    thread.start()
    conn, _ = listener.accept()
    try:
        request = peek_association_request(conn, 5)
        assert conn.recv(len(request)) == request  # peeking consumed nothing
        return request
    finally:
        conn.close()
        listener.close()
        thread.join(5)


def test_classifies_association_requests() -> None:
    storage = _captured_request(CTImageStorage, Verification)
    assert proposed_abstract_syntaxes(storage) == [CTImageStorage, Verification]
    assert is_storage_only(storage)
    mixed = _captured_request(CTImageStorage, StudyRootQueryRetrieveInformationModelFind)
    assert not is_storage_only(mixed)
    assert not is_storage_only(b"")
    assert not is_storage_only(b"\x07\x00\x00\x00\x00\x04\x00\x00\x00\x00")  # an A-ABORT
    assert proposed_abstract_syntaxes(storage[:-3]) is None  # truncated


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[int, Spool, ReceiverPool]]:
    spool = Spool(tmp_path / "spool")
    config = DicomConfig(ae_title=PACS_AE, host="127.0.0.1", port=0, strict_ae=False)
    stored: list[int] = []
    pool = ReceiverPool(
        2, receiver_options(config, spool.root, "WARNING"), on_stored=lambda: stored.append(1)
    )
    pool.start()
    assert pool.wait_ready(60)
    server = serve(build_ae(config), config, gateway_handlers(config, spool), pool)
    try:
        yield server.address[1], spool, pool
    finally:
        server.shutdown()


def test_concurrent_storescu_associations_are_all_stored(gateway, make_ct_series, tmp_path: Path) -> None:
    port, spool, _pool = gateway
    parts = [make_ct_series(tmp_path / f"part{i}", count=8) for i in range(4)]
    procs = [
        subprocess.Popen(
            ["storescu", "-aec", PACS_AE, "+sd", "127.0.0.1", str(port), str(paths[0].parent)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for paths in parts
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
    sent = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for paths in parts for p in paths}
    assert {e.sop_instance_uid for e in spool.pending()} == sent
    # Query/Retrieve is not storage-only: it stays in this process (here: no QR handlers, so refused).
    scu = AE(ae_title="VIEWER")
    scu.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = scu.associate("127.0.0.1", port, ae_title=PACS_AE)
    assert not assoc.is_established or not any(cx.result == 0 for cx in assoc.accepted_contexts)
    if assoc.is_established:
        assoc.release()


def test_killed_receiver_acknowledged_only_durable_instances_and_is_replaced(
    gateway, make_ct_series, tmp_path: Path
) -> None:
    port, spool, pool = gateway
    paths = make_ct_series(tmp_path / "series", count=12)
    datasets = [pydicom.dcmread(p) for p in paths]
    scu = AE(ae_title="CT_HUE")
    scu.add_requested_context(CTImageStorage, datasets[0].file_meta.TransferSyntaxUID)
    before = set(pool.pids())
    assoc = scu.associate("127.0.0.1", port, ae_title=PACS_AE)
    assert assoc.is_established
    acknowledged: list[str] = []
    for n, ds in enumerate(datasets):
        if n == 5:
            # The receiver running this association: the one that is not idle.
            victims = [r.proc.pid for r in pool._receivers if r.active and r.proc is not None]
            assert len(victims) == 1
            os.kill(victims[0], signal.SIGKILL)
            deadline = time.monotonic() + 10
            while _alive(victims[0]):  # gone, or a zombie waiting for the pool to reap it
                assert time.monotonic() < deadline, "the killed receiver is still running"
                time.sleep(0.01)
        try:
            status = assoc.send_c_store(ds)
        except Exception:  # noqa: BLE001 - the connection is gone
            break
        if status and status.Status == 0x0000:
            acknowledged.append(ds.SOPInstanceUID)
        if not assoc.is_established:
            break
    assoc.release() if assoc.is_established else assoc.abort()
    assert len(acknowledged) == 5
    pending = {e.sop_instance_uid for e in spool.pending()}
    assert set(acknowledged) <= pending
    # Nothing half-written is visible: every pending file is complete.
    for entry in spool.pending():
        assert pydicom.dcmread(entry.path).SOPInstanceUID == entry.sop_instance_uid

    deadline = time.monotonic() + 30
    while not (len(pool.pids()) == 2 and set(pool.pids()) != before and pool.wait_ready(0)):
        assert time.monotonic() < deadline, "receiver not restarted"
        time.sleep(0.1)
    # A new association is served by the replacement.
    assoc = scu.associate("127.0.0.1", port, ae_title=PACS_AE)
    assert assoc.is_established
    assert assoc.send_c_store(datasets[-1]).Status == 0x0000
    assoc.release()
    assert datasets[-1].SOPInstanceUID in {e.sop_instance_uid for e in spool.pending()}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
