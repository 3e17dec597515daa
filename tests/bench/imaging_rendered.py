"""Rendered-frame requests with and without the rendered-image cache (ADR 0318).

A 512x512 16-bit CT series (``--slices``, default 100) is stored by STOW-RS into the imaging service
(SQLite, SeaweedFS, NATS from hospital.testing.servers), then a viewer's scrolling is replayed over HTTP:
``--passes`` passes (default 3: down, up, down again, as a radiologist scrolls back and forth) over every
slice's ``/frames/1/rendered`` with the same window, ``--concurrency`` requests at a time (default 16).
Each configuration runs in a fresh service: the cache off (``rendered_cache_bytes=0``) and on (64 MiB).
Reported per configuration: first pass and later passes separately (a cache only helps a frame seen
before), p50 / p95 / max latency in ms, requests/s, and the serve process's CPU ms per request.

    .venv/bin/python tests/bench/imaging_rendered.py [--slices 100] [--passes 3] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script

from hospital.imaging.service import DEFINITION
from hospital.testing.servers import NatsServer, S3Server, free_port
from hospital.testing.services import issuer_for, running_service
from tests.bench.cpu import pct

SIZE = 512


def series(slices: int) -> tuple[str, str, list[tuple[str, bytes]]]:
    study, ser = generate_uid(), generate_uid()
    rng = np.random.default_rng(7)
    out = []
    for n in range(1, slices + 1):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, ser
        ds.PatientID, ds.PatientName, ds.Modality = "BN-BENCH-0001", "Trần^Văn Bình", "CT"
        ds.AccessionNumber, ds.InstanceNumber, ds.SeriesNumber = "CTBENCH", n, 1
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows = ds.Columns = SIZE
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.PixelData = rng.integers(0, 4096, (SIZE, SIZE), dtype=np.uint16).tobytes()
        buf = DicomBytesIO()
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
        out.append((str(ds.SOPInstanceUID), buf.getvalue()))
    return study, ser, out


async def run(cache_bytes: int, args: argparse.Namespace, nats: NatsServer, s3: S3Server, work: Path) -> dict:
    study, ser, parts = series(args.slices)
    tag = uuid.uuid4().hex[:8]
    async with running_service(
        DEFINITION,
        data_dir=work / f"svc-{tag}",
        database_url=f"sqlite+aiosqlite:///{work / f'imaging-{tag}.db'}",
        nats_url=nats.url,
        s3_endpoint=s3.endpoint,
        s3_access_key=s3.access_key,
        s3_secret_key=s3.secret_key,
        dicom_port=free_port(),
        dicom_receiver_processes=0,
        rendered_cache_bytes=cache_bytes,
    ) as svc:
        token = issuer_for(svc).mint_for_role("radiologist")
        base = f"http://127.0.0.1:{svc.settings.http_port}/dicomweb"
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=120) as c:
            boundary = uuid.uuid4().hex
            body = (
                b"".join(
                    f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + blob + b"\r\n"
                    for _, blob in parts
                )
                + f"--{boundary}--\r\n".encode()
            )
            r = await c.post(
                f"{base}/studies",
                content=body,
                headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'},
            )
            assert r.status_code == 200, r.text
            order = [sop for sop, _ in parts]
            sem = asyncio.Semaphore(args.concurrency)

            async def one(sop: str) -> float:
                async with sem:
                    t0 = time.perf_counter()
                    resp = await c.get(
                        f"{base}/studies/{study}/series/{ser}/instances/{sop}/frames/1/rendered",
                        params={"window": "40,400"},
                        headers={"Accept": "image/jpeg"},
                    )
                    assert resp.status_code == 200, resp.text
                    return (time.perf_counter() - t0) * 1000

            result: dict = {"cache_bytes": cache_bytes}
            for n in range(args.passes):
                sequence = order if n % 2 == 0 else order[::-1]
                cpu0, t0 = _self_cpu(), time.perf_counter()
                times = await asyncio.gather(*(one(sop) for sop in sequence))
                wall, cpu = time.perf_counter() - t0, _self_cpu() - cpu0
                result[f"pass{n + 1}"] = {
                    "p50_ms": round(pct(times, 50), 1),
                    "p95_ms": round(pct(times, 95), 1),
                    "max_ms": round(max(times), 1),
                    "requests_per_s": round(len(times) / wall, 1),
                    "cpu_ms_per_request": round(cpu * 1000 / len(times), 2),
                }
    return result


def _self_cpu() -> float:
    import os

    t = os.times()
    return t.user + t.system


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slices", type=int, default=100)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--cache-bytes", type=int, default=64 << 20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-rendered-") as tmp:
        work = Path(tmp)
        nats = await asyncio.to_thread(NatsServer(work / "nats").start)
        s3 = await asyncio.to_thread(S3Server(work / "s3").start)
        try:
            out = [await run(0, args, nats, s3, work), await run(args.cache_bytes, args, nats, s3, work)]
        finally:
            await asyncio.to_thread(s3.stop)
            await asyncio.to_thread(nats.stop)
    print(json.dumps({"slices": args.slices, "concurrency": args.concurrency, "runs": out}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
