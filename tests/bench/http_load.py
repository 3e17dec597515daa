"""HTTP load client for the imaging read-path benchmark, run as its own process so that the same client can
run beside this gateway and inside Orthanc's network namespace (`ip netns exec`).

    python tests/bench/http_load.py SPEC.json     # prints one JSON result line

SPEC: {"base": "http://127.0.0.1:PORT", "headers": {...}, "paths": [...], "concurrency": 16,
       "first": true|false}
With "first", the first path is fetched alone before the rest (time to first response, cold); then every
path (the first again included) is fetched with `concurrency` requests in flight. Each response is read to
its end; a non-2xx answer is counted as an error and reported.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import httpx


async def main(spec: dict) -> dict:
    limits = httpx.Limits(max_connections=spec["concurrency"], max_keepalive_connections=spec["concurrency"])
    out: dict = {"requests": len(spec["paths"]), "errors": 0, "bytes": 0}
    async with httpx.AsyncClient(
        base_url=spec["base"], headers=spec.get("headers", {}), limits=limits, timeout=120
    ) as client:
        if spec.get("first"):
            t0 = time.perf_counter()
            r = await client.get(spec["paths"][0])
            out["first_ms"] = round((time.perf_counter() - t0) * 1000, 2)
            out["first_status"] = r.status_code
        times: list[float] = []
        queue: asyncio.Queue[str] = asyncio.Queue()
        for p in spec["paths"]:
            queue.put_nowait(p)
        errors: list[str] = []

        async def worker() -> None:
            while not queue.empty():
                path = queue.get_nowait()
                t0 = time.perf_counter()
                r = await client.get(path)
                times.append((time.perf_counter() - t0) * 1000)
                out["bytes"] += len(r.content)
                if r.status_code // 100 != 2:
                    out["errors"] += 1
                    errors.append(f"{r.status_code} {r.text[:200]}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(spec["concurrency"])))
        elapsed = time.perf_counter() - started
    times.sort()

    def pct(q: float) -> float:
        return round(times[min(len(times) - 1, int(q * len(times)))], 2)

    out |= {
        "seconds": round(elapsed, 3),
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "max_ms": round(times[-1], 2),
        "error_samples": errors[:3],
    }
    return out


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        print(json.dumps(asyncio.run(main(json.load(f)))))
