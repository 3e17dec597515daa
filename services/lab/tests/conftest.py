"""Shared fixtures for the lab protocol tests: sample captures, a recording handler, real servers."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from hospital.lab.api.astm import AstmEndpoint, AstmServer, HostOrder, Peer, Query
from hospital.lab.api.hl7 import SpecimenQuery
from hospital.lab.service import DEFINITION
from hospital.testing.servers import free_port
from hospital.testing.services import running_service


def _samples_dir() -> Path:
    """The project brief's analyzer captures (never copied into the repository): HOSPITAL_ANALYZER_SAMPLES,
    else ``../shared/samples/analyzers`` beside this checkout, else beside the repository it was cloned
    from (a throwaway clone elsewhere, e.g. a CI check in /tmp)."""
    if os.environ.get("HOSPITAL_ANALYZER_SAMPLES"):
        return Path(os.environ["HOSPITAL_ANALYZER_SAMPLES"])
    repo = Path(__file__).resolve().parents[3]
    candidates = [repo.parent]
    origin = subprocess.run(
        ["git", "-C", str(repo), "config", "--get", "remote.origin.url"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if origin and Path(origin).is_dir():
        candidates.append(Path(origin).resolve().parent)
    for base in candidates:
        if (base / "shared" / "samples" / "analyzers").is_dir():
            return base / "shared" / "samples" / "analyzers"
    return candidates[0] / "shared" / "samples" / "analyzers"


SAMPLES = _samples_dir()

ORU_R01_MINDRAY = (
    "MSH|^~\\&|BC-5380|Mindray|||20240705103000||ORU^R01|1001|P|2.3.1||||||UNICODE\r"
    "PID|1||BN240001^^^BVDK^MR||Nguyễn^Thị Hoa||19850314|F\r"
    "PV1|1||Khoa Nội\r"
    "OBR|1||24070512345|00001^Automated Count^99MRC|||20240705101500\r"
    "OBX|1|NM|6690-2^WBC^LN||12.5|10*9/L|4.0-10.0|H|||F|||20240705102000\r"
    "OBX|2|NM|718-7^HGB^LN||135|g/L|120-160|N|||F\r"
    "OBX|3|NM|777-3^PLT^LN||45|10*9/L|100-300|L~LL|||F\r"
    "NTE|1||Tiểu cầu giảm, đề nghị kiểm tra lại\r"
)

OUL_R22 = (
    "MSH|^~\\&|cobas|LAB||LIS|20240705110000||OUL^R22^OUL_R22|OUL0001|P|2.5.1|||NE|AL||UNICODE UTF-8\r"
    "PID|1||BN240002^^^BVDK^MR||Trần^Văn Nam||19700101|M\r"
    "SPM|1|24070500042&LIS||SER^Serum^HL70487\r"
    "OBR|1|PL0042|FL0042|14749-6^Glucose^LN\r"
    "ORC|SC|PL0042|FL0042\r"
    "OBX|1|NM|14749-6^Glucose^LN|1|7.8|mmol/L|3.9-6.4|H|||F|||20240705105500||||cobas-c311\r"
    "NTE|1||Mẫu hơi vỡ hồng cầu\r"
)

OML_O21 = (
    "MSH|^~\\&|HIS|BVDK_TINH|LIS|LAB|20240705080000||OML^O21^OML_O21|OML0001|P|2.5.1|||AL|AL||UNICODE UTF-8\r"
    "PID|1||BN240003^^^BVDK^MR~012345678901^^^BYT^NI||Lê^Thị Mai||19920520|F\r"
    "PV1|1|O|KHAM^101\r"
    "ORC|NW|PO-778899|FO-2024-0001|GRP-01|||^^^^^S\r"
    "OBR|1|PO-778899|FO-2024-0001|58410-2^CBC panel^LN|||20240705075500\r"
    "SPM|1|24070500077||BLD^Whole blood^HL70487\r"
    "ORC|NW|PO-778900||GRP-01\r"
    "OBR|2|PO-778900||24323-8^Comprehensive metabolic panel^LN\r"
    "SPM|1|24070500078||SER^Serum^HL70487\r"
    "NTE|1||Bệnh nhân nhịn ăn từ 22 giờ\r"
)

QBP_Q11 = (
    "MSH|^~\\&|ANALYZER|LAB|LIS|BVDK|20240705090000||QBP^Q11^QBP_Q11|QBP0001|P|2.5.1|||NE|AL||UNICODE UTF-8\r"
    "QPD|WOS^Work Order Step^IHE_LABTF|Q0001|24070500077\r"
    "RCP|I||R\r"
)


@dataclass(frozen=True)
class Hl7Samples:
    oru_r01: str = ORU_R01_MINDRAY
    oul_r22: str = OUL_R22
    oml_o21: str = OML_O21
    qbp_q11: str = QBP_Q11


class RecordingHandler:
    """Storage double for the protocol servers: records what it stores, can block or fail on demand."""

    def __init__(self) -> None:
        self.stored: list[tuple[bytes, object, Peer]] = []
        self.queries: list[Query | SpecimenQuery] = []
        self.orders: dict[str, list[HostOrder]] = {}
        self.failures_left = 0
        self.gate: asyncio.Event | None = None
        self.store_calls = 0
        self.stored_event = asyncio.Event()

    async def store(self, raw: bytes, message: object, peer: Peer) -> None:
        self.store_calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.failures_left:
            self.failures_left -= 1
            raise RuntimeError("database unavailable")
        self.stored.append((raw, message, peer))
        self.stored_event.set()

    async def host_query(self, query: Query | SpecimenQuery) -> Sequence[HostOrder]:
        self.queries.append(query)
        ids = query.specimen_ids
        return [order for specimen in ids for order in self.orders.get(specimen, [])]

    @property
    def messages(self) -> list[object]:
        return [message for _, message, _ in self.stored]


@pytest.fixture
def samples() -> Path:
    assert SAMPLES.is_dir(), f"analyzer samples missing at {SAMPLES}"
    return SAMPLES


@pytest.fixture
def hl7_samples() -> Hl7Samples:
    """Invented HL7 lab messages (Mindray-style ORU^R01 v2.3.1, IHE LAW/LTW 2.5.1)."""
    return Hl7Samples()


@pytest.fixture
def handler() -> RecordingHandler:
    return RecordingHandler()


def fast_endpoint(**overrides: object) -> AstmEndpoint:
    """An endpoint on a free local port with timers short enough for tests."""
    options: dict[str, object] = {
        "instrument": "xn-550-khoa-huyet-hoc",
        "host": "127.0.0.1",
        "port": 0,
        "receive_timeout": 2.0,
        "reply_timeout": 2.0,
        "busy_retry_delay": 0.1,
        "contention_retry_delay": 2.0,
        "store_timeout": 2.0,
    }
    options.update(overrides)
    return AstmEndpoint(**options)  # type: ignore[arg-type]


@pytest.fixture
def endpoint() -> Callable[..., AstmEndpoint]:
    """Factory of test endpoints: ``endpoint(receive_timeout=0.2)``."""
    return fast_endpoint


@pytest.fixture
async def astm_server(handler: RecordingHandler) -> AsyncIterator[AstmServer]:
    async with AstmServer(fast_endpoint(), handler) as server:
        yield server


# --- the real lab service -------------------------------------------------------------------------------


@pytest.fixture
async def lab(database_url: str, nats_server, tmp_path):  # type: ignore[no-untyped-def]
    """The real lab service (HTTP, gRPC, ASTM and MLLP listeners, relay) on SQLite and PostgreSQL."""
    async with running_service(
        DEFINITION,
        data_dir=tmp_path,
        database_url=database_url,
        nats_url=nats_server.url,
        mllp_port=free_port(),
        astm_port=free_port(),
        instrument_timezone="UTC",
        admissions_grpc=f"127.0.0.1:{free_port()}",  # nothing listens: orders are taken as unverified
    ) as svc:
        yield svc
