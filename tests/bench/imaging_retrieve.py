"""Imaging read path (issue 16), side by side with Orthanc (+ its DICOMweb and GDCM plugins) in one run.

Data: a 300-slice 512x512 16-bit CT series (a phantom: a disc of soft tissue with noise, so compressed
sources compress as real CT does), sent with `storescu +sd` to this gateway and to Orthanc, three times:
uncompressed (Explicit VR Little Endian), JPEG-LS lossless (dcmtk `dcmcjpls`) and JPEG 2000 lossless
(pydicom with pylibjpeg-openjpeg).

1. **Retrieve** the uncompressed study: `getscu` (C-GET, study level, into a folder), `movescu` to a dcmtk
   `storescp` (C-MOVE; time until movescu returns, every file then checked on disk), and WADO-RS of the
   whole series (multipart/related, application/dicom, transfer-syntax=* so neither side transcodes):
   images/s and MB/s, best of ROUNDS interleaved runs (all runs kept).
2. **Viewer**: for each source, the time to the first rendered frame of the series (instance 1's
   `/rendered`, JPEG, the first request for it) and the p50/p95/p99 of rendered-frame requests while a
   viewer scrolls the series with 16 requests in flight (all 300 instances once).

Orthanc runs in a network namespace with only loopback (it listens on every interface), as in the ingest
benchmark; its clients (dcmtk, the HTTP load client `http_load.py`) run in that namespace, ours run beside
this gateway on 127.0.0.1: the same client programs for both. CPU per image / per request is read from
/proc for the gateway's processes and Orthanc's.

    python tests/bench/run.py imaging_retrieve
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid
from sqlalchemy import func, select

from hospital.chassis import aio
from hospital.imaging.adapters import tables as t
from hospital.imaging.service import DEFINITION
from hospital.testing.servers import NatsServer, PostgresServer, S3Server, free_port
from hospital.testing.services import issuer_for, running_service
from tests.bench.cpu import tree
from tests.bench.imaging_store import NS, Orthanc, cpu_seconds, service_groups
from tests.bench.stack import load_average

ROOT = Path(__file__).resolve().parents[2]
SLICES = int(os.environ.get("HOSPITAL_BENCH_RETRIEVE_SLICES", "300"))
SIZE, ROUNDS, CONCURRENCY = 512, 3, 16
PLUGINS = Path("/usr/share/orthanc/plugins")
WADO_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def phantom(n: int) -> bytes:
    rng = np.random.default_rng(n)
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    disc = ((x - SIZE / 2) ** 2 + (y - SIZE / 2) ** 2) < (SIZE * (0.35 + 0.05 * np.sin(n / 20))) ** 2
    image = np.where(disc, 1040, 24).astype(np.int32) + rng.integers(-20, 21, (SIZE, SIZE))
    return image.clip(0, 4095).astype(np.uint16).tobytes()


def make_series(directory: Path, syntax: str) -> dict[str, Any]:
    """Write the series in `syntax` ("raw", "jpegls", "j2k") under `directory`; its UIDs."""
    directory.mkdir(parents=True)
    study, series = generate_uid(), generate_uid()
    sops = []
    for n in range(1, SLICES + 1):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.PatientName, ds.PatientID = "Lê^Văn Hùng", f"BN-2026-{syntax}"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.StudyDate, ds.Modality, ds.AccessionNumber = "20261207", "CT", f"CT{syntax.upper()}"
        ds.SeriesNumber, ds.InstanceNumber = 1, n
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows = ds.Columns = SIZE
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.PixelData = phantom(n)
        path = directory / f"CT{n:04d}.dcm"
        if syntax == "j2k":
            ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        if syntax == "jpegls":
            subprocess.run(["dcmcjpls", "--encode-lossless", str(path), str(path)], check=True)
        sops.append(str(meta.MediaStorageSOPInstanceUID))
    return {"study": str(study), "series": str(series), "sops": sops, "dir": directory}


def files_in(directory: Path) -> int:
    return sum(1 for p in directory.rglob("*") if p.is_file())


def dir_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


async def run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    t0 = time.perf_counter()
    p = await asyncio.create_subprocess_exec(
        *cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env or dict(os.environ, TCP_NODELAY="1")
    )
    out, _ = await p.communicate()
    elapsed = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed: {out.decode(errors='replace')[-6000:]}")
    return elapsed, out.decode(errors="replace")


async def store(prefix: list[str], port: int, directory: Path, aec: str) -> None:
    await run(
        [*prefix, "storescu", "-aet", "BENCH", "-aec", aec, "+sd", "127.0.0.1", str(port), str(directory)]
    )


async def stow(prefix: list[str], url: str, headers: dict[str, str], directory: Path) -> None:
    """STOW-RS the folder in parts of 50 instances with curl (compressed files are sent as they are: a
    C-STORE acceptor may pick an uncompressed transfer syntax that storescu cannot convert to)."""
    files = sorted(directory.iterdir())
    for i in range(0, len(files), 50):
        boundary = uuid.uuid4().hex
        body = directory.parent / f"{directory.name}-stow.bin"
        with open(body, "wb") as out:
            for f in files[i : i + 50]:
                out.write(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
                out.write(f.read_bytes() + b"\r\n")
            out.write(f"--{boundary}--\r\n".encode())
        ctype = f'multipart/related; type="application/dicom"; boundary={boundary}'
        args = [*prefix, "curl", "-sS", "-f", "-X", "POST", "-H", f"Content-Type: {ctype}"]
        for k, v in headers.items():
            args += ["-H", f"{k}: {v}"]
        await run([*args, "--data-binary", f"@{body}", "-o", "/dev/null", url])
        body.unlink()


class Side:
    """One archive under test: how to reach it (prefix for the namespace), its AE, DICOM and HTTP ports."""

    def __init__(
        self, name: str, prefix: list[str], aec: str, dicom_port: int, http: str, headers: dict, root: str
    ) -> None:
        self.name, self.prefix, self.aec, self.dicom_port = name, prefix, aec, dicom_port
        self.http, self.headers, self.root = http, headers, root
        self.pids: list[int] = []

    def cpu(self) -> float:
        return cpu_seconds(self.pids)

    async def cget(self, study: str, out: Path) -> dict:
        out.mkdir(parents=True)
        cpu0 = self.cpu()
        elapsed, _ = await run(
            [
                *self.prefix,
                *("getscu", "-S", "-aec", self.aec, "-od", str(out)),
                *("-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}"),
                *("127.0.0.1", str(self.dicom_port)),
            ]
        )
        return self._rate(elapsed, out, cpu0)

    async def cmove(self, study: str, out: Path, dest_port: int) -> dict:
        out.mkdir(parents=True)
        scp = await asyncio.create_subprocess_exec(
            *self.prefix,
            *("storescp", "-aet", "DEST", "-od", str(out), "+B", str(dest_port)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(100):  # storescp listening (an echo answered)
                p = await asyncio.create_subprocess_exec(
                    *self.prefix,
                    *("echoscu", "-aec", "DEST", "127.0.0.1", str(dest_port)),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                if await p.wait() == 0:
                    break
                await asyncio.sleep(0.05)
            cpu0 = self.cpu()
            elapsed, _ = await run(
                [
                    *self.prefix,
                    *("movescu", "-S", "-aet", "BENCH", "-aec", self.aec, "-aem", "DEST"),
                    *("-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}"),
                    *("127.0.0.1", str(self.dicom_port)),
                ]
            )
            result = self._rate(elapsed, out, cpu0)
        finally:
            scp.terminate()
            await scp.wait()
        return result

    def _rate(self, elapsed: float, out: Path, cpu0: float) -> dict:
        got = files_in(out)
        size = dir_bytes(out)
        shutil.rmtree(out)
        return {
            "images": got,
            "images_per_s": round(got / elapsed, 1),
            "mb_per_s": round(size / elapsed / 1e6, 1),
            "seconds": round(elapsed, 3),
            "cpu_ms_per_image": round((self.cpu() - cpu0) * 1000 / max(got, 1), 2),
        }

    async def http_load(self, paths: list[str], accept: str, concurrency: int, first: bool) -> dict:
        spec = {
            "base": self.http,
            "headers": self.headers | {"Accept": accept},
            "paths": paths,
            "concurrency": concurrency,
            "first": first,
        }
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(spec, f)
        cpu0 = self.cpu()
        try:
            _, out = await run([*self.prefix, sys.executable, str(ROOT / "tests/bench/http_load.py"), f.name])
        finally:
            os.unlink(f.name)
        result = json.loads(out.strip().splitlines()[-1])
        result["cpu_ms_per_request"] = round((self.cpu() - cpu0) * 1000 / max(len(paths), 1), 2)
        return result

    async def wado_series(self, s: dict) -> dict:
        r = await self.http_load(
            [f"{self.root}/studies/{s['study']}/series/{s['series']}"], WADO_ACCEPT, 1, False
        )
        seconds = r["seconds"]
        return {
            "images_per_s": round(SLICES / seconds, 1),
            "mb_per_s": round(r["bytes"] / seconds / 1e6, 1),
            "seconds": seconds,
            "errors": r["errors"],
            "error_samples": r["error_samples"],
            "cpu_ms_per_image": round(r["cpu_ms_per_request"] / SLICES, 2),
        }

    async def viewer(self, s: dict) -> dict:
        base = f"{self.root}/studies/{s['study']}/series/{s['series']}/instances"
        paths = [f"{base}/{sop}/rendered" for sop in s["sops"]]
        return await self.http_load(paths, "image/jpeg", CONCURRENCY, True)


async def indexed(svc: Any) -> int:
    async with svc.rt.db.session() as s:
        return (await s.execute(select(func.count()).select_from(t.instances))).scalar_one()


def best(runs: list[dict]) -> dict:
    return max(runs, key=lambda v: v["images_per_s"]) | {"runs": runs}


async def main() -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-retrieve-"))
    nats = NatsServer(tmp / "nats").start()
    s3 = S3Server(tmp / "s3").start()
    pg = PostgresServer(Path(tempfile.mkdtemp(prefix="bench-pg-"))).start()
    dest_port = free_port()
    have_orthanc = Orthanc.available() and (PLUGINS / "libOrthancDicomWeb.so").exists()
    orthanc = (
        Orthanc(
            tmp / "orthanc",
            {
                "Plugins": [str(PLUGINS / "libOrthancDicomWeb.so"), str(PLUGINS / "libOrthancGdcm.so")],
                "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
                "DicomModalities": {"DEST": ["DEST", "127.0.0.1", dest_port]},
                "DicomAlwaysAllowGet": True,
                "DicomAlwaysAllowMove": True,
                "DicomAlwaysAllowFind": True,
            },
        )
        if have_orthanc
        else None
    )
    result: dict[str, Any] = {
        "series": f"{SLICES} x {SIZE}x{SIZE} 16-bit CT phantom",
        "viewer": f"{CONCURRENCY} rendered (JPEG) requests in flight",
        "load_average_before": load_average(),
    }
    try:
        sources = {name: make_series(tmp / "src" / name, name) for name in ("raw", "jpegls", "j2k")}
        result["source_mb"] = {n: round(dir_bytes(s["dir"]) / 1e6, 1) for n, s in sources.items()}
        url = await pg.create_database("bench_imaging_retrieve")
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
            known_aes=f"DEST=127.0.0.1:{dest_port}",
            log_level="WARNING",
        ) as svc:
            await svc.rt.imaging.dicom.started.wait()
            token = issuer_for(svc).mint_for_role("radiologist")
            ours = Side(
                "ours",
                [],
                "HOSPITAL_PACS",
                svc.settings.dicom_port,
                f"http://127.0.0.1:{svc.settings.http_port}",
                {"Authorization": f"Bearer {token}"},
                "/dicomweb",
            )
            groups = service_groups(svc, s3, pg)
            ours.pids = [pid for pids in groups.values() for pid in pids]
            sides = [ours]
            if orthanc:
                assert orthanc.proc is not None
                theirs = Side(
                    "orthanc",
                    ["ip", "netns", "exec", NS],
                    "ORTHANC",
                    orthanc.port,
                    "http://127.0.0.1:8042",
                    {},
                    "/dicom-web",
                )
                theirs.pids = tree(orthanc.proc.pid)
                sides.append(theirs)
            writer = {"Authorization": f"Bearer {issuer_for(svc).mint_for_role('radiographer')}"}
            for name, s in sources.items():
                if name == "raw":  # C-STORE, as modalities send
                    await store([], svc.settings.dicom_port, s["dir"], "HOSPITAL_PACS")
                    if orthanc:
                        await store(["ip", "netns", "exec", NS], orthanc.port, s["dir"], "ORTHANC")
                else:
                    await stow([], f"{ours.http}/dicomweb/studies", writer, s["dir"])
                    if orthanc:
                        await stow(
                            ["ip", "netns", "exec", NS],
                            "http://127.0.0.1:8042/dicom-web/studies",
                            {},
                            s["dir"],
                        )
            deadline = time.monotonic() + 300
            while await indexed(svc) < SLICES * len(sources):
                assert time.monotonic() < deadline, "the gateway did not index every image"
                await asyncio.sleep(0.1)
            ours.pids = [pid for pids in service_groups(svc, s3, pg).values() for pid in pids]

            raw = sources["raw"]
            for side in sides:  # warm-up: associations, modules, first reads (not reported)
                await side.cget(raw["study"], tmp / f"warm-{side.name}")
            runs: dict[str, dict[str, list[dict]]] = {side.name: {} for side in sides}
            for i in range(ROUNDS):
                for side in sides:
                    r = runs[side.name]
                    r.setdefault("cget", []).append(
                        await side.cget(raw["study"], tmp / f"get-{side.name}-{i}")
                    )
                    r.setdefault("cmove", []).append(
                        await side.cmove(raw["study"], tmp / f"move-{side.name}-{i}", dest_port)
                    )
                    r.setdefault("wado_rs_series", []).append(await side.wado_series(raw))
            for side in sides:
                result[side.name] = {k: best(v) for k, v in runs[side.name].items()}
                result[side.name]["viewer"] = {name: await side.viewer(s) for name, s in sources.items()}
            if orthanc:
                ratios: dict[str, Any] = {}
                for k in ("cget", "cmove", "wado_rs_series"):
                    ratios[k] = round(
                        result["ours"][k]["images_per_s"] / result["orthanc"][k]["images_per_s"], 2
                    )
                for name in sources:
                    o, t_ = result["ours"]["viewer"][name], result["orthanc"]["viewer"][name]
                    ratios[f"viewer_p95_{name}"] = (
                        round(o["p95_ms"] / t_["p95_ms"], 2) if t_["p95_ms"] else None
                    )
                    ratios[f"viewer_first_{name}"] = (
                        round(o["first_ms"] / t_["first_ms"], 2) if t_.get("first_ms") else None
                    )
                result["ratio_to_orthanc"] = ratios
                result["ratio_note"] = (
                    "retrieve: ours/Orthanc images/s (goal ≥ 1.0); viewer: ours/Orthanc ms (goal ≤ 1.0)"
                )
            else:
                result["orthanc"] = "not installed: apt-get install -y orthanc orthanc-dicomweb orthanc-gdcm"
        result["load_average_after"] = load_average()
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
