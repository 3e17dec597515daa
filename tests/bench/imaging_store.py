"""Imaging ingest benchmark: a 300-slice 512x512 16-bit CT series sent with dcmtk `storescu +sd`
(TCP_NODELAY=1) to the imaging service on 1 association and on 4 parallel associations (4 storescu
processes over 4 parts). Two clocks for ours: *acknowledged* (storescu done: every image answered,
i.e. fsync'd in the spool: what the modality sees, as Orthanc's clock) and *stored* (every image in S3
and indexed). Side by side with Orthanc (OS package; SyncStorageArea false, MaximumPduLength 131072,
StoreMD5ForAttachments false), run in a network namespace with only loopback, runs interleaved, after
one warm-up series each (processes started, modules imported). CPU per image is read from /proc for
each process group: the serve process (this process: it also runs the benchmark's polling loop),
the receiver processes, the pipeline process, SeaweedFS, PostgreSQL and Orthanc. Also: C-FIND
latency with 100,000 studies indexed (PostgreSQL).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from sqlalchemy import func, insert, select, text

from hospital.chassis import aio
from hospital.imaging.adapters import tables as t
from hospital.imaging.service import DEFINITION
from hospital.testing.servers import NatsServer, PostgresServer, S3Server, free_port
from hospital.testing.services import running_service
from tests.bench.cpu import tree

SLICES, SIZE, ROUNDS = 300, 512, 3
ENV = dict(os.environ, TCP_NODELAY="1")
NS = "bench"


def make_series(directory: Path, parts: int) -> list[Path]:
    """Write the series split over `parts` sub-directories; returns them."""
    study, series = generate_uid(), generate_uid()
    dirs = [directory / f"part{i}" for i in range(parts)]
    for d in dirs:
        d.mkdir(parents=True)
    pixels = (np.random.default_rng(1).integers(0, 4096, (SIZE, SIZE), dtype=np.uint16)).tobytes()
    for n in range(1, SLICES + 1):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.PatientName, ds.PatientID = "Trần^Thị Bích Ngọc", "BN-2025-000777"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.StudyDate, ds.Modality, ds.AccessionNumber = "20250314", "CT", "CT250314999"
        ds.SeriesNumber, ds.InstanceNumber = 1, n
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows = ds.Columns = SIZE
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = pixels
        pydicom.dcmwrite(dirs[(n - 1) % parts] / f"CT{n:04d}.dcm", ds, enforce_file_format=True)
    return dirs


async def send(prefix: list[str], port: int, dirs: list[Path], aec: str) -> None:
    procs = [
        await asyncio.create_subprocess_exec(
            *prefix,
            "storescu",
            "-aet",
            "BENCH",
            "-aec",
            aec,
            "+sd",
            "127.0.0.1",
            str(port),
            str(d),
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for d in dirs
    ]
    for p in procs:
        _, err = await p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"storescu failed: {err.decode()[-500:]}")


def total_bytes(dirs: list[Path]) -> int:
    return sum(f.stat().st_size for d in dirs for f in d.iterdir())


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / TICK


def _postmaster(pg: PostgresServer) -> int | None:
    try:
        return int((pg.data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def service_groups(svc, s3: S3Server, pg: PostgresServer) -> dict[str, list[int]]:
    receivers = svc.rt.imaging.dicom.server.receivers
    pipeline_pid = getattr(svc.rt.imaging.pipeline, "pid", None)
    postmaster = _postmaster(pg)
    return {
        "serve": [os.getpid()],
        "receivers": receivers.pids() if receivers else [],
        "pipeline": [pipeline_pid] if pipeline_pid else [],
        "seaweedfs": tree(s3.proc.pid),
        "postgresql": tree(postmaster) if postmaster else [],
    }


async def _indexed(svc) -> int:
    async with svc.rt.db.session() as s:
        return (await s.execute(select(func.count()).select_from(t.instances))).scalar_one()


async def run_ours(svc, tmp: Path, parts: int, s3: S3Server, pg: PostgresServer) -> dict:
    dirs = make_series(tmp / uuid.uuid4().hex, parts)
    size = total_bytes(dirs)
    before = await _indexed(svc)
    groups = service_groups(svc, s3, pg)
    cpu_before = {k: cpu_seconds(v) for k, v in groups.items()}
    start = time.perf_counter()
    await send([], svc.settings.dicom_port, dirs, "HOSPITAL_PACS")
    acked = time.perf_counter() - start
    while await _indexed(svc) - before < SLICES:
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - start
    groups = service_groups(svc, s3, pg)  # a restarted child would show here
    cpu = {k: round((cpu_seconds(v) - cpu_before[k]) * 1000 / SLICES, 2) for k, v in groups.items()}
    shutil.rmtree(dirs[0].parent)
    return {
        "images_per_s": round(SLICES / elapsed, 1),
        "mb_per_s": round(size / elapsed / 1e6, 1),
        "seconds": round(elapsed, 2),
        "acknowledged_after_s": round(acked, 2),
        "acknowledged_images_per_s": round(SLICES / acked, 1),
        "cpu_ms_per_image": cpu | {"total": round(sum(cpu.values()), 2)},
    }


class Orthanc:
    def __init__(self, base: Path, extra: dict | None = None) -> None:
        self.base, self.port = base, 4242
        self.extra = extra or {}  # more configuration (plugins, modalities) for other benchmarks
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("Orthanc") is not None and shutil.which("ip") is not None

    def start(self) -> None:
        subprocess.run(["ip", "netns", "add", NS], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "exec", NS, "ip", "link", "set", "lo", "up"], check=True)
        (self.base / "storage").mkdir(parents=True, exist_ok=True)
        cfg = {
            "Name": "bench",
            "StorageDirectory": str(self.base / "storage"),
            "IndexDirectory": str(self.base / "storage"),
            "DicomAet": "ORTHANC",
            "DicomPort": self.port,
            "HttpPort": 8042,
            "SyncStorageArea": False,
            "MaximumPduLength": 131072,
            "StoreMD5ForAttachments": False,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowStore": True,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [],
        } | self.extra
        (self.base / "orthanc.json").write_text(json.dumps(cfg))
        with open(self.base / "orthanc.log", "ab") as log:
            self.proc = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    NS,
                    "env",
                    "TCP_NODELAY=1",
                    "Orthanc",
                    str(self.base / "orthanc.json"),
                ],
                stdout=log,
                stderr=log,
            )
        for _ in range(100):
            ok = subprocess.run(
                ["ip", "netns", "exec", NS, "echoscu", "-aec", "ORTHANC", "127.0.0.1", str(self.port)],
                capture_output=True,
                check=False,
            )
            if ok.returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError("Orthanc did not start")

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(30)
        subprocess.run(["ip", "netns", "del", NS], capture_output=True, check=False)

    async def run(self, tmp: Path, parts: int) -> dict:
        dirs = make_series(tmp / uuid.uuid4().hex, parts)
        size = total_bytes(dirs)
        assert self.proc is not None
        pids = tree(self.proc.pid)
        cpu_before = cpu_seconds(pids)
        start = time.perf_counter()
        await send(["ip", "netns", "exec", NS], self.port, dirs, "ORTHANC")
        elapsed = time.perf_counter() - start  # Orthanc answers after storing and indexing
        cpu = round((cpu_seconds(pids) - cpu_before) * 1000 / SLICES, 2)
        shutil.rmtree(dirs[0].parent)
        return {
            "images_per_s": round(SLICES / elapsed, 1),
            "mb_per_s": round(size / elapsed / 1e6, 1),
            "seconds": round(elapsed, 2),
            "cpu_ms_per_image": cpu,
        }


async def cfind_latency(svc, studies: int = 100_000) -> dict:
    now = datetime.now(UTC)
    rows = [
        {
            "study_instance_uid": f"2.25.{10**20 + i}",
            "patient_id": f"BN-2024-{i:06d}",
            "patient_name": "Nguyễn^Văn An",
            "name_folded": f"NGUYEN^VAN AN {i}",
            "study_date": f"2024{1 + i % 12:02d}15",
            "accession_number": f"CT{i:08d}",
            "modalities": "CT",
            "series_count": 1,
            "instance_count": 100,
            "size_bytes": 0,
            "reconciliation": "matched",
            "first_received_at": now,
            "last_received_at": now,
            "announced_at": now,
        }
        for i in range(studies)
    ]
    async with svc.rt.db.session() as s:
        for i in range(0, studies, 5000):
            await s.execute(insert(t.studies), rows[i : i + 5000])
        await s.commit()
        await s.execute(text("ANALYZE studies"))  # as autovacuum would soon; the plans below need statistics
        await s.commit()
    out = {}
    queries = {
        "by_patient_id": ["PatientID=BN-2024-054321"],
        "by_accession": ["AccessionNumber=CT00054321"],
        # 11 names start with "...5432", one of them (54328) has a study in September
        "by_name_prefix_and_date": ["PatientName=NGUYEN^VAN AN 5432*", "StudyDate=20240901-20240930"],
        # 8,333 studies in July: the first find_limit (1,000) are returned
        "by_date_1000_results": ["StudyDate=20240701-20240731"],
    }
    for name, keys in queries.items():
        times = []
        for _ in range(15):
            args = []
            # A key named twice is sent once, with the last value: a return key "PatientName" after
            # "PatientName=..." would blank the filter (the 753 ms "prefix" figure before was that).
            matching = {k.split("=", 1)[0] for k in keys}
            for k in [*keys, *(r for r in ("StudyInstanceUID", "PatientName") if r not in matching)]:
                args += ["-k", k]
            t0 = time.perf_counter()
            r = await asyncio.create_subprocess_exec(
                "findscu",
                "-S",
                "-aec",
                "HOSPITAL_PACS",
                "-k",
                "QueryRetrieveLevel=STUDY",
                *args,
                "127.0.0.1",
                str(svc.settings.dicom_port),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            found, _ = await r.communicate()
            times.append((time.perf_counter() - t0) * 1000)
        out[name] = {
            "median_ms": round(statistics.median(times), 1),
            "max_ms": round(max(times), 1),
            "results": found.decode(errors="replace").count("Find Response:"),
        }
    out["note"] = "findscu wall time per query (process start + association + query), PostgreSQL"
    return out


async def main() -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-imaging-"))
    nats = NatsServer(tmp / "nats").start()
    s3 = S3Server(tmp / "s3").start()
    pg = PostgresServer(Path(tempfile.mkdtemp(prefix="bench-pg-"))).start()
    orthanc = Orthanc(tmp / "orthanc") if Orthanc.available() else None
    result: dict = {
        "series": f"{SLICES} x {SIZE}x{SIZE} 16-bit CT, Explicit VR LE, storescu +sd, TCP_NODELAY=1"
    }
    try:
        url = await pg.create_database("bench_imaging")
        if orthanc:
            orthanc.start()
        async with running_service(
            DEFINITION,
            data_dir=tmp / "svc",
            database_url=url,
            nats_url=nats.url,
            s3_endpoint=s3.endpoint,
            s3_access_key=s3.access_key,
            s3_secret_key=s3.secret_key,
            dicom_host="127.0.0.1",
            dicom_port=free_port(),
            log_level="WARNING",
        ) as svc:
            await svc.rt.imaging.dicom.started.wait()
            await run_ours(svc, tmp, 4, s3, pg)  # warm-up: children started, modules imported
            if orthanc:
                await orthanc.run(tmp, 4)
            runs: dict[str, list[dict]] = {}
            for _ in range(ROUNDS):
                for parts in (1, 4):
                    runs.setdefault(f"ours_{parts}", []).append(await run_ours(svc, tmp, parts, s3, pg))
                    if orthanc:
                        runs.setdefault(f"orthanc_{parts}", []).append(await orthanc.run(tmp, parts))
            for name, values in runs.items():
                result[name] = max(values, key=lambda v: v["images_per_s"]) | {"runs": values}
            if orthanc:
                for parts in (1, 4):
                    ours, theirs = result[f"ours_{parts}"], result[f"orthanc_{parts}"]
                    result[f"ratio_to_orthanc_{parts}"] = {
                        "stored_in_s3_and_indexed": round(ours["images_per_s"] / theirs["images_per_s"], 2),
                        "acknowledged": round(
                            max(r["acknowledged_images_per_s"] for r in runs[f"ours_{parts}"])
                            / theirs["images_per_s"],
                            2,
                        ),
                    }
            else:
                result["orthanc"] = "not installed: apt-get install -y orthanc"
            result["cfind_100k_studies"] = await cfind_latency(svc)
    finally:
        if orthanc:
            orthanc.stop()
        pg.stop()
        s3.stop()
        nats.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return result


if __name__ == "__main__":
    print(json.dumps(aio.run(main()), indent=2, ensure_ascii=False))
