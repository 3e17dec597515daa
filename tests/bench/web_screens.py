"""Web (BFF) benchmark on PostgreSQL (issue 14): every screen's server response under ``USERS`` signed-in
users, and in Chromium the reception screen usable after navigation.

Processes: PostgreSQL, nats-server, admissions, lab, billing, emr and web, each in its own process
(``stack.py``), each service on its own database; the load driver (httpx, asyncio) is this process.
Seeded through the services' own APIs: ``PATIENTS`` patients registered in admissions with a visit each in
room P101 (the EMR opens their encounters from ``admissions.visit.opened``).

1. **Server response per screen**, closed loop with think time: ``USERS`` users signed in through the
   sign-in form (cookie session), spread over the roles (receptionist, doctor, lab technician, cashier,
   admin, as in ``MIX``); each requests its role's routes (``ROUTES``) in turn, then thinks ``THINK``
   seconds (uniform ±50 %), for ``SECONDS``. Reported per route: p50/p95/p99 of the time to the whole
   response body, and the non-200 answers (a 5xx is a bug). CPU per request of the web process.
2. **Reception usable in Chromium** (Debian's /usr/bin/chromium through Playwright, signed in as the
   receptionist): ``page.goto('/reception')`` then, polled each animation frame, the first text input on
   the page is focused; its ``performance.now()`` (milliseconds since the navigation started) is the
   figure. ``NAVIGATIONS`` times, while no other load runs; p50/p95.

Reference in the same run: a bare HTTP/1.1 responder (``stack.http_echo_reference``) under the same
driver, concurrency and think time; ratio = worst screen p95 / reference p95.

    python tests/bench/run.py web_screens
    HOSPITAL_BENCH_WEB_USERS=5 HOSPITAL_BENCH_WEB_SECONDS=10 python tests/bench/run.py web_screens
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from hospital.testing.servers import NatsServer, PostgresServer, free_port  # noqa: E402
from tests.bench.stack import (  # noqa: E402
    Timings,
    http_echo_reference,
    issuer,
    load_average,
    start_service,
)

USERS = int(os.environ.get("HOSPITAL_BENCH_WEB_USERS", "50"))
SECONDS = float(os.environ.get("HOSPITAL_BENCH_WEB_SECONDS", "120"))
THINK = float(os.environ.get("HOSPITAL_BENCH_WEB_THINK_SECONDS", "1"))
PATIENTS = int(os.environ.get("HOSPITAL_BENCH_WEB_PATIENTS", "40"))
NAVIGATIONS = int(os.environ.get("HOSPITAL_BENCH_WEB_NAVIGATIONS", "50"))
PASSWORD = "Benh-vien-bench-2026!"
ROOM = "P101"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"]

# role → share of the users
MIX = {"receptionist": 0.3, "doctor": 0.3, "lab_technician": 0.15, "cashier": 0.15, "admin": 0.1}
# role → the screens' routes it requests ({patient}, {encounter}: seeded ids)
ROUTES: dict[str, list[str]] = {
    "receptionist": [
        "/home",
        "/reception",
        "/reception/search?q=Nguy",
        "/reception/patients/{patient}",
        "/display",
        f"/display/{ROOM}",
    ],
    "doctor": [
        "/doctor",
        f"/doctor/queue?room={ROOM}",
        "/doctor/encounters/{encounter}",
        "/doctor/icd10?q=viem phoi",
    ],
    "lab_technician": ["/lab", "/lab/worklist", "/lab/criticals"],
    "cashier": ["/cashier", "/cashier/shift", "/cashier/invoices"],
    "admin": ["/admin/users"],
}
NAMES = ["Nguyễn Thị Hồng", "Nguyễn Văn Bình", "Trần Thị Mai", "Lê Minh Tuấn", "Phạm Đức Thắng"]


async def sign_in(c: httpx.AsyncClient, username: str) -> None:
    page = await c.get("/login")
    m = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert m, "no CSRF token on the sign-in page"
    r = await c.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": m.group(1)})
    assert r.status_code == 303, f"sign-in of {username}: {r.status_code} {r.text[:300]}"


async def seed(adm_url: str, emr_url: str, iss: Any) -> tuple[list[str], list[str]]:
    """Patients and their visits through admissions; waits for the EMR's encounters."""
    patients: list[str] = []
    async with httpx.AsyncClient(
        base_url=adm_url, headers={"Authorization": f"Bearer {iss.mint_for_role('receptionist')}"}, timeout=30
    ) as clerk:
        for i in range(PATIENTS):
            r = await clerk.post(
                "/api/v1/patients",
                json={
                    "full_name": NAMES[i % len(NAMES)],
                    "birth_date": f"{1950 + i % 50}-0{1 + i % 9}-1{i % 9}",
                    "sex": "female" if i % 2 else "male",
                },
            )
            assert r.status_code == 201, r.text
            pid = r.json()["id"]
            r = await clerk.post("/api/v1/visits", json={"patient_id": pid, "room": ROOM})
            assert r.status_code == 201, r.text
            patients.append(pid)
    encounters: list[str] = []
    tok = iss.mint("user:doctor", ["doctor"], name="BS. Doctor", extra={"departments": ["KKB", "NTH", "CC"]})
    async with httpx.AsyncClient(
        base_url=emr_url, headers={"Authorization": f"Bearer {tok}"}, timeout=30
    ) as emr:
        deadline = time.perf_counter() + 120
        for pid in patients:
            while True:
                r = await emr.get("/api/v1/encounters", params={"patient_id": pid})
                items = r.json().get("items", []) if r.status_code == 200 else []
                if items:
                    encounters.append(items[0]["id"])
                    break
                assert time.perf_counter() < deadline, (
                    f"no EMR encounter for {pid}: {r.status_code} {r.text[:200]}"
                )
                await asyncio.sleep(0.1)
    return patients, encounters


async def chromium_reception(url: str) -> Timings:
    from playwright.async_api import async_playwright

    out = Timings()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            ctx = await browser.new_context(viewport={"width": 1366, "height": 768}, locale="vi-VN")
            page = await ctx.new_page()
            await page.goto(url + "/login")
            await page.fill("input[name=username]", "receptionist")
            await page.fill("input[name=password]", PASSWORD)
            await page.press("input[name=password]", "Enter")
            await page.wait_for_url(re.compile(r".*/(home|reception)$"))
            for _ in range(NAVIGATIONS + 1):  # the first is a warm-up
                await page.goto(url + "/home")
                await page.goto(url + "/reception", wait_until="commit")
                handle = await page.wait_for_function(
                    """() => {
                        const el = document.querySelector('input:not([type=hidden]):not([disabled])');
                        if (!el) return false;
                        el.focus();
                        return document.activeElement === el ? performance.now() : false;
                    }""",
                    polling="raf",
                    timeout=10_000,
                )
                out.ms.append(float(await handle.json_value()))
            out.ms.pop(0)
        finally:
            await browser.close()
    return out


async def run(pg: PostgresServer, nats_url: str, base: Path) -> dict[str, Any]:
    for name in ("admissions", "lab", "billing", "emr", "web"):
        await pg.create_database(name)
    iss = issuer(base)
    tag = uuid.uuid4().hex[:6]
    common = {"data_dir": str(base), "nats_url": nats_url, "shutdown_grace_seconds": 2}
    procs = []
    try:
        adm = start_service(
            "admissions",
            "hospital.admissions.service",
            {**common, "database_url": pg.socket_url("admissions")},
        )
        procs.append(adm)
        lab = start_service(
            "lab",
            "hospital.lab.service",
            {
                **common,
                "database_url": pg.socket_url("lab"),
                "mllp_port": free_port(),
                "astm_port": free_port(),
                "admissions_grpc": adm.grpc,
            },
        )
        procs.append(lab)
        from hospital.billing.config import BillingSettings

        billing = start_service(
            "billing",
            "hospital.billing.service",
            {
                **common,
                "database_url": pg.socket_url("billing"),
                "vnpay_hash_secret": "bench-vnpay-secret-7c1d",
                **{n: f"bench-{n}-{tag}" for n in BillingSettings.model_fields if n.endswith("_durable")},
            },
        )
        procs.append(billing)
        emr = start_service(
            "emr",
            "hospital.emr.service",
            {
                **common,
                "database_url": pg.socket_url("emr"),
                "lab_grpc_target": lab.grpc,
                "admissions_durable": f"bench-adm-{tag}",
                "lab_durable": f"bench-lab-{tag}",
                "imaging_durable": f"bench-img-{tag}",
            },
        )
        procs.append(emr)
        web = start_service(
            "web",
            "hospital.web.service",
            {
                **common,
                "database_url": pg.socket_url("web"),
                "admissions_grpc": adm.grpc,
                "lab_grpc": lab.grpc,
                "billing_grpc": billing.grpc,
                "emr_grpc": emr.grpc,
                "imaging_grpc": f"127.0.0.1:{free_port()}",  # imaging is not running (no screen uses it)
            },
            after=f"web-demo-users:{PASSWORD}",
        )
        procs.append(web)
        patients, encounters = await seed(adm.url, emr.url, iss)

        rest = max(0, USERS - len(MIX))  # one user of each role, the rest by share
        roles = list(MIX) + [r for r, share in MIX.items() for _ in range(round(share * rest))]
        roles = (roles + ["receptionist"] * USERS)[:USERS]
        timings: dict[str, Timings] = {route: Timings() for routes in ROUTES.values() for route in routes}
        clients = [httpx.AsyncClient(base_url=web.url, timeout=60) for _ in roles]
        try:
            for i in range(0, len(clients), 10):  # argon2 sign-ins, a few at a time
                await asyncio.gather(
                    *(sign_in(c, r) for c, r in zip(clients[i : i + 10], roles[i : i + 10], strict=True))
                )
            rng = random.Random(14)

            def url_of(route: str, k: int) -> str:
                return route.format(
                    patient=patients[k % len(patients)], encounter=encounters[k % len(encounters)]
                )

            # warm-up: each user requests its routes once, not measured
            for c, role in zip(clients, roles, strict=True):
                for k, route in enumerate(ROUTES[role]):
                    await c.get(url_of(route, k))
            cpu0 = web.cpu()
            t0 = time.perf_counter()
            deadline = t0 + SECONDS

            async def user(c: httpx.AsyncClient, role: str, u: int) -> None:
                k = u
                await asyncio.sleep(rng.uniform(0, THINK))
                while time.perf_counter() < deadline:
                    route = ROUTES[role][k % len(ROUTES[role])]
                    s = time.perf_counter()
                    try:
                        r = await c.get(url_of(route, k))
                    except httpx.HTTPError as exc:
                        timings[route].error(type(exc).__name__, str(exc))
                    else:
                        if r.status_code == 200:
                            timings[route].ms.append((time.perf_counter() - s) * 1000)
                        else:
                            timings[route].error(str(r.status_code), r.text)
                    k += 1
                    await asyncio.sleep(THINK * rng.uniform(0.5, 1.5))

            await asyncio.gather(
                *(user(c, r, u) for u, (c, r) in enumerate(zip(clients, roles, strict=True)))
            )
            elapsed = time.perf_counter() - t0
            cpu = web.cpu() - cpu0
        finally:
            for c in clients:
                await c.aclose()
        reception = await chromium_reception(web.url)
    finally:
        for p in reversed(procs):
            p.stop()
    reference = await http_echo_reference(USERS, min(SECONDS, 30.0), THINK)
    per_route = {route: t.summary() for route, t in timings.items()}
    requests = sum(len(t.ms) for t in timings.values())
    worst = max((s.get("p95", 0.0) for s in per_route.values()), default=float("nan"))
    ref_p95 = reference["p95_ms"] or float("nan")
    return {
        "database": "postgresql",
        "users": USERS,
        "roles": {r: roles.count(r) for r in MIX},
        "loop": f"closed loop, think time {THINK} s (uniform 0.5–1.5×) between one user's requests",
        "duration_seconds": round(elapsed, 1),
        "requests": requests,
        "requests_per_second": round(requests / elapsed, 1),
        "cpu_ms_per_request_web": round(cpu / max(1, requests) * 1000, 2),
        "screens_ms": per_route,
        "worst_screen_p95_ms": worst,
        "errors": {r: s["errors"] for r, s in per_route.items() if "errors" in s},
        "reception_usable_ms_chromium": {**reception.summary(), "navigations": NAVIGATIONS},
        "reference_http_echo": reference,
        "ratio_to_reference": {"worst_screen_p95_over_echo_p95": round(worst / ref_p95, 1)},
        "seeded": {"patients": len(patients), "encounters": len(encounters)},
        "services": "admissions, lab, billing, emr, web (imaging not running: no measured screen uses it)",
        "load_average_after": load_average(),
        "goal": {"screen_p95_ms": 100, "reception_usable_ms": 500, "users": 50},
    }


async def main() -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="web-bench-"))
    base.chmod(0o755)  # PostgreSQL runs as its own OS user
    pg = PostgresServer(base / "pg").start()
    nats_srv = NatsServer(base / "nats").start()
    try:
        return await run(pg, nats_srv.url, base)
    finally:
        nats_srv.stop()
        pg.stop()


if __name__ == "__main__":
    from hospital.chassis import aio

    print(json.dumps(aio.run(main()), indent=2, ensure_ascii=False))
