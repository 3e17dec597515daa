"""The lean storage upper layer (api/dicom/lean.py) in receiver processes, against dcmtk, pynetdicom
and a raw socket: negotiation, bytes kept as sent in every transfer syntax, refusals, strict mode,
a stream cut in the middle of a data set, a protocol violation."""

from __future__ import annotations

import contextlib
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE, _config
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from hospital.imaging.adapters.spool import Spool
from hospital.imaging.api.dicom import DicomConfig
from hospital.imaging.api.dicom.lean import (
    C_STORE_RQ,
    REJECT_UNKNOWN_CALLING_AE,
    AssociateRequest,
    associate_ac,
    negotiate,
)
from hospital.imaging.api.dicom.receivers import ReceiverPool, receiver_options
from hospital.imaging.api.dicom.server import build_ae, gateway_handlers, serve
from hospital.imaging.domain.part10 import read_framing

PACS_AE = "HOSPITAL_PACS"
Gateway = Callable[..., tuple[int, Spool]]

# (pydicom sample, dcmconv options giving the transfer syntax sent, storescu proposal option)
SAMPLES = [
    ("CT_small.dcm", [], []),  # Explicit VR Little Endian
    ("CT_small.dcm", ["+ti"], ["-xi"]),  # Implicit VR Little Endian
    ("CT_small.dcm", ["+tb"], ["-xb"]),  # Explicit VR Big Endian (retired)
    ("CT_small.dcm", ["+td"], ["-xd"]),  # Deflated Explicit VR Little Endian
    ("SC_rgb_jpeg_dcmtk.dcm", [], ["-xy"]),  # JPEG Baseline
    ("MR_small_jp2klossless.dcm", [], ["-xv"]),  # JPEG 2000 lossless
    ("SC_rgb_rle_2frame.dcm", [], ["-xr"]),  # multi-frame RLE
    ("test-SR.dcm", [], []),  # structured report (nested sequences)
]


@pytest.fixture
def lean_gateway(tmp_path: Path) -> Iterator[Gateway]:
    servers = []

    def start(
        *, strict_ae: bool = False, allowed: dict[str, tuple[str, int]] | None = None
    ) -> tuple[int, Spool]:
        spool = Spool(tmp_path / f"spool{len(servers)}")
        config = DicomConfig(
            ae_title=PACS_AE,
            host="127.0.0.1",
            port=0,
            strict_ae=strict_ae,
            allowed_aes=allowed or {},
            acse_timeout=5,
            network_timeout=5,
        )
        pool = ReceiverPool(1, receiver_options(config, spool.root, "WARNING", "lean"))
        pool.start()
        assert pool.wait_ready(60)
        server = serve(build_ae(config), config, gateway_handlers(config, spool), pool)
        servers.append(server)
        return server.address[1], spool

    yield start
    for server in servers:
        server.shutdown()


def _dataset_bytes(path: Path) -> tuple[str, bytes]:
    with path.open("rb") as fp:
        syntax, _ = read_framing(fp)
        return syntax, fp.read()


@pytest.mark.parametrize(
    ("name", "conversion", "proposal"), SAMPLES, ids=[f"{n}{''.join(o)}" for n, _, o in SAMPLES]
)
def test_storescu_bytes_arrive_unchanged(
    name: str,
    conversion: list[str],
    proposal: list[str],
    tmp_path: Path,
    lean_gateway: Gateway,
    sample_file: Callable[[str], Path],
) -> None:
    sent = tmp_path / "sent.dcm"
    assert (
        subprocess.run(["dcmconv", "-g", "-p", *conversion, sample_file(name), sent], check=False).returncode
        == 0
    )
    port, spool = lean_gateway()
    result = subprocess.run(
        ["storescu", "-aet", "CT_HUE", "-aec", PACS_AE, *proposal, "127.0.0.1", str(port), str(sent)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    (entry,) = spool.pending()
    original = pydicom.dcmread(sent)
    syntax, spooled = _dataset_bytes(entry.path)
    assert syntax == original.file_meta.TransferSyntaxUID
    assert spooled == _dataset_bytes(sent)[1]
    received = pydicom.dcmread(entry.path)
    assert received == original
    assert received.file_meta.SourceApplicationEntityTitle == "CT_HUE"


def test_series_echo_and_strict_mode(lean_gateway: Gateway, make_ct_series, tmp_path: Path) -> None:
    paths = make_ct_series(tmp_path / "series", count=30, size=64)
    port, spool = lean_gateway(strict_ae=True, allowed={"CT_HUE": ("127.0.0.1", 104)})
    echo = subprocess.run(
        ["echoscu", "-aet", "CT_HUE", "-aec", PACS_AE, "127.0.0.1", str(port)],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert echo.returncode == 0, echo.stderr
    stranger = subprocess.run(
        ["echoscu", "-aet", "STRANGER", "-aec", PACS_AE, "127.0.0.1", str(port)],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert stranger.returncode != 0
    assert "Calling AE Title Not Recognized" in stranger.stderr + stranger.stdout
    result = subprocess.run(
        [
            "storescu",
            "-aet",
            "CT_HUE",
            "-aec",
            PACS_AE,
            "+sd",
            "127.0.0.1",
            str(port),
            str(tmp_path / "series"),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    sent = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in paths}
    assert {e.sop_instance_uid for e in spool.pending()} == sent


def _write_raw(ds: Dataset, path: Path, announced_uid: str) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = UID(announced_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    fp = DicomBytesIO()
    fp.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(fp, meta, enforce_standard=True)
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    path.write_bytes(fp.getvalue())
    return path


def test_refused_instances_leave_nothing(
    lean_gateway: Gateway, make_ct_series, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    port, spool = lean_gateway()
    (path,) = make_ct_series(tmp_path / "one", count=1)
    ds = pydicom.dcmread(path)
    missing = pydicom.dcmread(path)
    del missing.StudyInstanceUID
    scu = AE(ae_title="CT_HUE")
    scu.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = scu.associate("127.0.0.1", port, ae_title=PACS_AE)
    assert assoc.is_established
    status = assoc.send_c_store(_write_raw(missing, tmp_path / "missing.dcm", ds.SOPInstanceUID))
    assert status.Status == 0xA900 and "StudyInstanceUID" in status.ErrorComment
    status = assoc.send_c_store(_write_raw(ds, tmp_path / "other.dcm", "1.2.3.4.5"))
    assert status.Status == 0xA900 and status.ErrorComment.startswith("SOPInstanceUID ")
    assert spool.pending() == [] and list((spool.root / "tmp").iterdir()) == []
    # the association is still usable after refusals
    assert assoc.send_c_store(path).Status == 0x0000
    assoc.release()
    assert [e.sop_instance_uid for e in spool.pending()] == [ds.SOPInstanceUID]


def _item(kind: int, value: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(value)) + value


def _associate_rq(calling: str, *contexts: tuple[int, str, str]) -> bytes:
    items = _item(0x10, b"1.2.840.10008.3.1.1.1")
    for cid, abstract, syntax in contexts:
        items += _item(
            0x20, bytes((cid, 0, 0, 0)) + _item(0x30, abstract.encode()) + _item(0x40, syntax.encode())
        )
    items += _item(0x50, _item(0x51, struct.pack(">I", 16384)) + _item(0x52, b"1.2.3.4"))
    body = (
        struct.pack(">HH", 1, 0)
        + PACS_AE.ljust(16).encode()
        + calling.ljust(16).encode()
        + b"\0" * 32
        + items
    )
    return struct.pack(">BBI", 1, 0, len(body)) + body


def _read_pdu(sock: socket.socket) -> tuple[int, bytes]:
    head = b""
    while len(head) < 6:
        chunk = sock.recv(6 - len(head))
        if not chunk:
            return 0, b""
        head += chunk
    kind, _, length = struct.unpack(">BBI", head)
    body = b""
    while len(body) < length:
        body += sock.recv(length - len(body))
    return kind, body


def _store_command(sop_instance: str) -> bytes:
    def el(element: int, value: bytes) -> bytes:
        return struct.pack("<HHI", 0, element, len(value)) + value

    uid = (CTImageStorage.encode() + b"\0") if len(CTImageStorage) % 2 else CTImageStorage.encode()
    inst = sop_instance.encode() + (b"\0" if len(sop_instance) % 2 else b"")
    body = (
        el(0x0002, uid)
        + el(0x0100, struct.pack("<H", C_STORE_RQ))
        + el(0x0110, struct.pack("<H", 7))
        + el(0x0700, struct.pack("<H", 0))
        + el(0x0800, struct.pack("<H", 0))
        + el(0x1000, inst)
    )
    return struct.pack("<HHII", 0, 0, 4, len(body)) + body


def _pdata(cid: int, control: int, data: bytes) -> bytes:
    pdv = struct.pack(">IBB", len(data) + 2, cid, control) + data
    return struct.pack(">BBI", 4, 0, len(pdv)) + pdv


def test_stream_cut_mid_dataset_stores_nothing_and_bad_pdus_abort(
    lean_gateway: Gateway, make_ct_series, tmp_path: Path
) -> None:
    port, spool = lean_gateway()
    (path,) = make_ct_series(tmp_path / "one", count=1)
    ds = pydicom.dcmread(path)
    _, data = _dataset_bytes(path)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            _associate_rq(
                "CT_HUE",
                (1, CTImageStorage, ExplicitVRLittleEndian),
                (3, "1.2.3.999", ExplicitVRLittleEndian),
            )
        )
        kind, body = _read_pdu(sock)
        assert kind == 2  # A-ASSOCIATE-AC
        # context 1 accepted (result 0), context 3 refused: abstract syntax not supported (3)
        assert bytes((1, 0, 0, 0)) in body and bytes((3, 0, 3, 0)) in body
        sock.sendall(_pdata(1, 0x03, _store_command(ds.SOPInstanceUID)))
        sock.sendall(_pdata(1, 0x00, data[: len(data) // 2]))  # half the data set, not the last fragment
        sock.shutdown(socket.SHUT_WR)  # the stream ends there
        # the gateway read it all and closed its side: it is done with the association
        sock.settimeout(10)
        with contextlib.suppress(ConnectionResetError):
            while sock.recv(65536):
                pass
    # the partial file is removed and nothing was stored
    deadline = time.monotonic() + 10
    while list((spool.root / "tmp").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list((spool.root / "tmp").iterdir()) == []
    assert spool.pending() == []

    # the whole data set, in two fragments: stored and acknowledged
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(_associate_rq("CT_HUE", (1, CTImageStorage, ExplicitVRLittleEndian)))
        assert _read_pdu(sock)[0] == 2
        sock.sendall(_pdata(1, 0x03, _store_command(ds.SOPInstanceUID)))
        sock.sendall(_pdata(1, 0x00, data[:1000]) + _pdata(1, 0x02, data[1000:]))
        kind, body = _read_pdu(sock)
        assert kind == 4
        command = body[6:]
        assert struct.pack("<HHI", 0, 0x0900, 2) + b"\0\0" in command  # Status 0x0000
        # a data set on a context that was never accepted: A-ABORT
        sock.sendall(_pdata(9, 0x02, b"\0" * 8))
        assert _read_pdu(sock)[0] == 7
    assert [e.sop_instance_uid for e in spool.pending()] == [ds.SOPInstanceUID]
    assert pydicom.dcmread(spool.pending()[0].path) == ds


def test_negotiation_prefers_our_order_and_answers_roles() -> None:
    request = AssociateRequest(
        called_ae=PACS_AE.ljust(16).encode(),
        calling_ae=b"CT_HUE".ljust(16),
        contexts=[
            (1, CTImageStorage, ["1.2.840.10008.1.2", ExplicitVRLittleEndian]),
            (3, Verification, ["1.2.840.10008.1.2.4.50"]),
            (5, "1.2.3", [ExplicitVRLittleEndian]),
        ],
        max_length=16384,
        roles={CTImageStorage: (1, 0)},
        async_window=True,
    )
    accepted = negotiate(request)
    assert accepted == {1: (CTImageStorage, ExplicitVRLittleEndian)}  # Explicit first in our order
    ac = associate_ac(request, accepted)
    assert ac[0] == 2 and ac[10:26] == request.called_ae and ac[26:42] == request.calling_ae
    assert bytes((3, 0, 4, 0)) in ac and bytes((5, 0, 3, 0)) in ac  # TS refused / abstract refused
    assert CTImageStorage.encode() + b"\x01\x00" in ac  # role selection: SCU yes, SCP no
    assert REJECT_UNKNOWN_CALLING_AE == (1, 1, 3)
