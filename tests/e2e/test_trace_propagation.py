"""One trace id from an HTTP request, through a gRPC call to admissions, through the outbox and NATS,
to the consumer that applies the event."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import httpx
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hospital.admissions.service import DEFINITION
from hospital.chassis import telemetry
from hospital.chassis.bus import Consumer, Subscription
from hospital.chassis.rpc import call_metadata
from hospital.contracts.admissions.v1 import admissions_pb2 as pb
from hospital.contracts.admissions.v1 import admissions_pb2_grpc as pb_grpc
from hospital.testing.services import issuer_for, running_service


async def test_one_trace_from_http_to_consumer(nats_server, tmp_path) -> None:
    telemetry.setup_telemetry("e2e")
    exporter = InMemorySpanExporter()
    trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(exporter))
    seen: dict[str, str] = {}

    async with running_service(
        DEFINITION,
        data_dir=tmp_path,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/a.db",
        nats_url=nats_server.url,
    ) as svc:
        token = issuer_for(svc).mint_for_role("receptionist")

        # A front-end-like HTTP app that registers a patient through admissions' gRPC API.
        front = FastAPI()
        telemetry.instrument_fastapi(front)

        @front.post("/register")
        async def register() -> dict[str, str]:
            async with grpc.aio.insecure_channel(
                f"127.0.0.1:{svc.settings.grpc_port}", interceptors=telemetry.grpc_client_interceptors()
            ) as ch:
                p = await pb_grpc.AdmissionsServiceStub(ch).RegisterPatient(
                    pb.RegisterPatientRequest(
                        full_name="Phan Thị Thu Trang",
                        birth_date="1994-06-30",
                        sex=pb.SEX_FEMALE,
                        request_id=str(uuid.uuid4()),
                    ),
                    metadata=call_metadata(token),
                )
            return {"id": p.id}

        async def remember(session, ev) -> None:
            seen["trace_id"] = format(trace.get_current_span().get_span_context().trace_id, "032x")
            seen["patient_id"] = ev.message().patient.id

        consumer = Consumer(
            svc.rt.db,
            svc.rt.js,
            Subscription(
                "ADMISSIONS", f"e2e-{uuid.uuid4().hex[:8]}", {"admissions.patient.registered": remember}
            ),
            service="e2e",
        )
        stop = asyncio.Event()
        task = asyncio.create_task(consumer.run(stop))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=front), base_url="http://front") as c:
            r = await c.post("/register")
        assert r.status_code == 200
        for _ in range(100):
            if seen.get("patient_id") == r.json()["id"]:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await task

    spans = exporter.get_finished_spans()
    http_span = next(s for s in spans if s.kind == trace.SpanKind.SERVER and "register" in s.name)
    trace_id = format(http_span.context.trace_id, "032x")
    kinds = {(s.kind, s.name.split()[0]) for s in spans if format(s.context.trace_id, "032x") == trace_id}
    assert (trace.SpanKind.SERVER, "/hospital.admissions.v1.AdmissionsService/RegisterPatient") in kinds
    assert any(k == trace.SpanKind.PRODUCER for k, _ in kinds)  # relay publish to NATS
    assert any(k == trace.SpanKind.CONSUMER for k, _ in kinds)  # consumer applying the event
    assert seen["trace_id"] == trace_id
