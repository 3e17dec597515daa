"""The S3 path's cost on its own: N objects of ~512 KB PUT to SeaweedFS (started by `S3Server`) the way the
imaging pipeline uploads a spooled CT slice, from a few client threads; reports objects/s and CPU ms
per object of the SeaweedFS process tree (user/system) and of this client process, from /proc, then
reads every object back and compares it byte for byte. Measuring stick of docs/adr/0305.

    .venv/bin/python tests/bench/s3_put.py                      # 1000 objects, 4 threads, SDK fput_object
    .venv/bin/python tests/bench/s3_put.py --upload signed      # adapters/s3put.py (digest-signed PUT)
    .venv/bin/python tests/bench/s3_put.py --weed-arg=-master.volumePreallocate --env GOGC=400
    .venv/bin/python tests/bench/s3_put.py --mode server        # weed server -filer -s3 instead of weed mini
    .venv/bin/python tests/bench/s3_put.py --cpuprofile /tmp/weed.pprof   # then: go tool pprof -top \
                                                                # .venv/bin/weed /tmp/weed.pprof

Uploads (``--upload``): ``sdk`` = the minio SDK's ``fput_object(bucket, key, path,
content_type="application/dicom")`` from a file, as `app/ingest.py` does by default (plain HTTP: the SDK
hashes the payload for SigV4 and sends no Content-MD5; part size: the SDK's default, one PUT below 5 MiB);
``signed`` = `SignedPut` with the SHA-256 the pipeline already has as the instance digest
(``HOSPITAL_IMAGING_PIPELINE_SDK_UPLOAD=false``). Keys are ``studies/<study>/series/<series>/instances/
<sop>.dcm`` as `instance_key`. Content (``--content``): ``ct`` (default) 12-bit pixel values in 16-bit
words as the imaging benchmark's series; ``random`` bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from hospital.chassis.storage import ObjectStore
from hospital.testing.servers import S3Server

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script
from tests.bench.cpu import tree

SIZE = (
    512 * 1024 + 1400
)  # default: a 512x512 16-bit CT slice plus its header, as the imaging benchmark's files


def _cpu(pids: list[int]) -> tuple[float, float]:
    """(user, system) seconds of these processes."""
    tick = os.sysconf("SC_CLK_TCK")
    user = system = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11])
            system += int(fields[12])
        except OSError:
            pass
    return user / tick, system / tick


def _self_cpu() -> float:
    t = os.times()
    return t.user + t.system


def make_files(directory: Path, n: int, distinct: int, size: int, content: str) -> list[tuple[Path, str]]:
    """`distinct` different files, reused round robin. ``ct``: like the imaging benchmark's slices (12-bit
    values in little-endian 16-bit words: every other byte is 0x00-0x0F, which matters to SeaweedFS's
    multipart parser, as 0x0D is CR); ``random``: uniformly random bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    files = []
    for i in range(distinct):
        if content == "ct":
            data = rng.integers(0, 4096, size // 2 + 1, dtype="<u2").tobytes()[:size]
        else:
            data = os.urandom(size)
        path = directory / f"obj{i:04d}.dcm"
        path.write_bytes(data)
        files.append((path, hashlib.sha256(data).hexdigest()))
    return [files[i % distinct] for i in range(n)]


def run(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-s3put-"))
    s3 = S3Server(tmp / "s3", extra_args=args.weed_arg, mode=args.mode)
    if args.cpuprofile:
        s3.extra_args = [*s3.extra_args, f"-cpuprofile={args.cpuprofile}"]
    saved = {k: os.environ.get(k) for k, _ in (e.split("=", 1) for e in args.env)}
    os.environ.update(dict(e.split("=", 1) for e in args.env))  # e.g. GOGC=200 for weed
    try:
        s3.start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        store = ObjectStore(s3.endpoint, s3.access_key, s3.secret_key)
        client = store.client
        bucket = "dicom"
        client.make_bucket(bucket)
        files = make_files(
            tmp / "files", args.n + args.warmup, min(args.n + args.warmup, 200), args.size, args.content
        )
        signed = None
        if args.upload != "sdk":
            from hospital.imaging.adapters.s3put import SignedPut

            signed = SignedPut(s3.endpoint, s3.access_key, s3.secret_key)
        study, series = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2"

        def key(i: int) -> str:  # as app/ingest.py's instance_key
            return f"studies/{study}/series/{series}/instances/1.2.826.0.1.3680043.8.498.{1000 + i}.dcm"

        def put(i: int) -> None:
            path, digest = files[i]
            if signed is None:
                client.fput_object(bucket, key(i), str(path), content_type=args.content_type)
            elif args.upload == "signed":
                signed.put(bucket, key(i), path.read_bytes(), digest, content_type=args.content_type)
            else:  # unsigned: SigV4 over the headers only (x-amz-content-sha256: UNSIGNED-PAYLOAD)
                signed.put(
                    bucket, key(i), path.read_bytes(), "UNSIGNED-PAYLOAD", content_type=args.content_type
                )

        weed = tree(s3.proc.pid)
        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(put, range(args.warmup)))  # connections opened, volumes grown
            time.sleep(0.5)
            w0, c0, t0 = _cpu(weed), _self_cpu(), time.perf_counter()
            list(pool.map(put, range(args.warmup, args.warmup + args.n)))
            elapsed = time.perf_counter() - t0
            w1, c1 = _cpu(weed), _self_cpu()
        # Whatever SeaweedFS still does for these PUTs right after answering (none seen): a short settle.
        time.sleep(0.3)
        w2 = _cpu(weed)
        ok = 0
        if args.verify:
            for i in range(args.warmup, args.warmup + args.n):
                resp = client.get_object(bucket, key(i))
                try:
                    ok += resp.read() == files[i][0].read_bytes()
                finally:
                    resp.close()
                    resp.release_conn()
        n = args.n
        data_dir = tmp / "s3" / "data"
        return {
            "objects": n,
            "object_bytes": args.size,
            "threads": args.threads,
            "upload": args.upload,
            "content": args.content,
            "content_type": args.content_type,
            "mode": args.mode,
            "weed_args": args.weed_arg,
            "env": args.env,
            "objects_per_s": round(n / elapsed, 1),
            "seaweedfs_cpu_ms_per_object": round((sum(w1) - sum(w0)) * 1000 / n, 2),
            "seaweedfs_user_sys_ms": [
                round((w1[0] - w0[0]) * 1000 / n, 2),
                round((w1[1] - w0[1]) * 1000 / n, 2),
            ],
            "seaweedfs_after_ms_per_object": round((sum(w2) - sum(w1)) * 1000 / n, 2),
            "client_cpu_ms_per_object": round((c1 - c0) * 1000 / n, 2),
            "verified_byte_for_byte": ok if args.verify else None,
            "data_dir_bytes": sum(f.stat().st_size for f in data_dir.rglob("*") if f.is_file()),
            "load_average": os.getloadavg(),
        }
    finally:
        s3.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--size", type=int, default=SIZE, help="bytes per object")
    p.add_argument("--content", choices=["ct", "random"], default="ct")
    p.add_argument("--upload", choices=["sdk", "signed", "unsigned"], default="sdk")
    p.add_argument("--content-type", default="application/dicom")
    p.add_argument(
        "--mode",
        choices=["mini", "server"],
        default="mini",
        help="weed mini (as S3Server starts it) or weed server -filer -s3",
    )
    p.add_argument("--weed-arg", action="append", default=[], help="extra weed option (repeatable)")
    p.add_argument("--cpuprofile", default=None)
    p.add_argument("--env", action="append", default=[], help="K=V in weed's environment (repeatable)")
    p.add_argument("--no-verify", dest="verify", action="store_false")
    p.add_argument("--repeat", type=int, default=1)
    args = p.parse_args(argv)
    failed = False
    for _ in range(args.repeat):
        result = run(args)
        print(json.dumps(result), flush=True)
        failed |= args.verify and result["verified_byte_for_byte"] != args.n
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
