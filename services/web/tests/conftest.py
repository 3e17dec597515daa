"""The web's tests run the real services (admissions, lab, billing, EMR and the web, each with its own
database, on free ports; imaging where a test needs it) once per session, and drive Debian's Chromium through
Playwright: one browser for the session, a fresh context (cookies) per test. Screenshots go to
test-artifacts/web/ (not committed)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from hospital.admissions.service import DEFINITION as ADMISSIONS
from hospital.billing.config import BillingSettings
from hospital.billing.service import DEFINITION as BILLING
from hospital.chassis.app import Service
from hospital.emr.config import EmrSettings
from hospital.emr.service import DEFINITION as EMR
from hospital.imaging.service import DEFINITION as IMAGING
from hospital.lab.service import DEFINITION as LAB
from hospital.testing.servers import NatsServer, free_port
from hospital.testing.services import running_service
from hospital.web.service import DEFINITION as WEB

# A page's assertions wait for what the person would see; on a CI machine running two test workers the
# services behind a screen (several processes each) can take longer than Playwright's default 5 s.
expect.set_options(timeout=15_000)


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
DEMO_PASSWORD = "Benh-vien-2026!"
VNPAY_SECRET = "web-test-vnpay-5b2e"
BANK_SECRET = "web-test-bank-key-77c1"
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "web"
VIEWPORT = {"width": 1366, "height": 768}


@dataclass
class Stack:
    admissions: Service
    lab: Service
    billing: Service
    emr: Service
    web: Service
    imaging_port: int  # the web's imaging address: a test starts imaging there when it needs it
    imaging_http_port: int  # and its DICOMweb (the doctor's image viewer)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web.settings.http_port}"

    @property
    def admissions_url(self) -> str:
        return f"http://127.0.0.1:{self.admissions.settings.http_port}"


@pytest.fixture(scope="session")
def web_nats(tmp_path_factory) -> Iterator[NatsServer]:
    """The web stacks' own nats-server: their services live for the session (of a test worker that may run
    other services' test files too), so on the shared server they would consume those tests' events
    (an EMR opening a second encounter for another test's visit)."""
    server = NatsServer(tmp_path_factory.mktemp("web-nats")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
async def stack(web_nats, tmp_path_factory) -> AsyncIterator[Stack]:
    data = tmp_path_factory.mktemp("web-stack")

    def db(name: str) -> str:
        return f"sqlite+aiosqlite:///{data}/{name}.db"

    common = {"data_dir": data, "nats_url": web_nats.url, "shutdown_grace_seconds": 2}
    imaging_port, imaging_http_port = free_port(), free_port()
    async with (
        running_service(ADMISSIONS, database_url=db("admissions"), **common) as adm,
        running_service(
            LAB,
            database_url=db("lab"),
            mllp_port=free_port(),
            astm_port=free_port(),
            instrument_timezone="UTC",
            admissions_grpc=f"127.0.0.1:{adm.settings.grpc_port}",  # orders name patients admissions knows
            instruments=[{"name": "XN-550", "mode": "server", "port": free_port(), "dialect": "sysmex"}],
            **common,
        ) as lab,
        running_service(
            BILLING,
            database_url=db("billing"),
            vnpay_hash_secret=VNPAY_SECRET,
            bank_webhook_secret=BANK_SECRET,
            **{
                name: f"web-{name}-{uuid.uuid4().hex[:8]}"
                for name in BillingSettings.model_fields
                if name.endswith("_durable")
            },
            **common,
        ) as billing,
        running_service(
            EMR,
            database_url=db("emr"),
            lab_grpc_target=f"127.0.0.1:{lab.settings.grpc_port}",
            # imaging orders are not delivered (they stay pending); studies reach the EMR by their events
            imaging_grpc_target=f"127.0.0.1:{free_port()}",
            **{
                name: f"web-{name}-{uuid.uuid4().hex[:8]}"
                for name in EmrSettings.model_fields
                if name.endswith("_durable")
            },
            **common,
        ) as emr,
        running_service(
            WEB,
            database_url=db("web"),
            admissions_grpc=f"127.0.0.1:{adm.settings.grpc_port}",
            lab_grpc=f"127.0.0.1:{lab.settings.grpc_port}",
            billing_grpc=f"127.0.0.1:{billing.settings.grpc_port}",
            emr_grpc=f"127.0.0.1:{emr.settings.grpc_port}",
            imaging_grpc=f"127.0.0.1:{imaging_port}",  # a test starts imaging there when it needs it
            imaging_http=f"http://127.0.0.1:{imaging_http_port}",
            **common,
        ) as web,
    ):
        await web.rt.extras["web"].accounts.ensure_demo_users(DEMO_PASSWORD)
        yield Stack(adm, lab, billing, emr, web, imaging_port, imaging_http_port)


@pytest.fixture(scope="session")
async def web_without_backends(web_nats, tmp_path_factory) -> AsyncIterator[str]:
    """A web whose admissions, EMR and imaging do not answer (nothing listens on their ports)."""
    data = tmp_path_factory.mktemp("web-alone")
    async with running_service(
        WEB,
        data_dir=data,
        database_url=f"sqlite+aiosqlite:///{data}/web.db",
        nats_url=web_nats.url,
        shutdown_grace_seconds=2,
        backend_timeout_seconds=1.0,
        admissions_grpc=f"127.0.0.1:{free_port()}",
        emr_grpc=f"127.0.0.1:{free_port()}",
        imaging_grpc=f"127.0.0.1:{free_port()}",
        imaging_http=f"http://127.0.0.1:{free_port()}",
    ) as web:
        await web.rt.extras["web"].accounts.ensure_demo_users(DEMO_PASSWORD)
        yield f"http://127.0.0.1:{web.settings.http_port}"


@dataclass
class ImagingStack:
    imaging: Service
    web: Service
    down_port: int  # the routing destination PACS_KHO: nothing listens there

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web.settings.http_port}"


@pytest.fixture(scope="session")
async def imaging_stack(web_nats, s3_server, tmp_path_factory) -> AsyncIterator[ImagingStack]:
    """Imaging (SQLite, S3 storage, its DICOM port) and a web that calls it; a routing destination
    (PACS_KHO) whose address answers nothing, so forwards to it wait with their error."""
    data = tmp_path_factory.mktemp("web-imaging")
    common = {"data_dir": data, "nats_url": web_nats.url, "shutdown_grace_seconds": 2}
    down = free_port()
    async with (
        running_service(
            IMAGING,
            database_url=f"sqlite+aiosqlite:///{data}/imaging.db",
            s3_endpoint=s3_server.endpoint,
            s3_access_key=s3_server.access_key,
            s3_secret_key=s3_server.secret_key,
            dicom_host="127.0.0.1",
            dicom_port=free_port(),
            known_aes=f"PACS_KHO=127.0.0.1:{down}",
            study_quiet_seconds=0.5,
            pipeline_poll_seconds=0.2,
            routing_poll_seconds=0.2,
            routing_retry_seconds=0.5,
            routing_max_retry_seconds=2.0,
            upload_retry_seconds=0.3,
            **common,
        ) as imaging,
        running_service(
            WEB,
            database_url=f"sqlite+aiosqlite:///{data}/web.db",
            imaging_grpc=f"127.0.0.1:{imaging.settings.grpc_port}",
            admissions_grpc=f"127.0.0.1:{free_port()}",
            **common,
        ) as web,
    ):
        await asyncio.wait_for(imaging.rt.imaging.dicom.started.wait(), timeout=30)
        await web.rt.extras["web"].accounts.ensure_demo_users(DEMO_PASSWORD)
        yield ImagingStack(imaging, web, down)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            await b.close()


async def new_context(browser: Browser, **options: object) -> BrowserContext:
    return await browser.new_context(
        viewport=VIEWPORT, locale="vi-VN", timezone_id="Asia/Ho_Chi_Minh", **options
    )  # type: ignore[arg-type]


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    ctx = await new_context(browser)
    try:
        yield ctx
    finally:
        await ctx.close()


async def sign_in(page: Page, base: str, username: str, password: str = DEMO_PASSWORD) -> None:
    await page.goto(base + "/")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", password)
    await page.press("input[name=password]", "Enter")
    await page.wait_for_url(
        re.compile(r".*/(home|reception|display|doctor|ward|lab|cashier|imaging|admin/users|audit|password)$")
    )


async def shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=False)
    return path


async def http_sign_in(base: str, username: str, password: str = DEMO_PASSWORD) -> httpx.AsyncClient:
    """An httpx client holding a signed-in session (as a browser would: the sign-in form's CSRF cookie)."""
    client = httpx.AsyncClient(base_url=base, timeout=30, follow_redirects=False)
    page = await client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, page.text
    r = await client.post("/login", data={"username": username, "password": password, "csrf_token": token[1]})
    assert r.status_code == 303, r.text
    return client


def csrf_of(html: str) -> str:
    m = re.search(r'<meta name="csrf-token" content="([^"]+)"', html)
    assert m, "no CSRF token on the page"
    return m[1]
