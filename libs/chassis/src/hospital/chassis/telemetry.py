"""OpenTelemetry: traces across HTTP (FastAPI), gRPC, NATS (bus.py propagates ``traceparent``) and the
database (SQLAlchemy), plus metrics exposed for Prometheus at ``/metrics``."""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

log = logging.getLogger(__name__)
_configured = False


def setup_telemetry(
    service: str, exporter: str = "none", *, span_exporter: SpanExporter | None = None
) -> None:
    """Install the tracer and meter providers once per process."""
    global _configured
    if _configured:
        return
    _configured = True
    resource = Resource.create({"service.name": f"hospital-{service}", "service.namespace": "hospital"})
    provider = TracerProvider(resource=resource)
    if span_exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(span_exporter))
    elif exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # type: ignore
        except ImportError:
            log.error("otel_exporter=otlp needs opentelemetry-exporter-otlp-proto-http installed")
        else:
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader

        metrics.set_meter_provider(
            MeterProvider(resource=resource, metric_readers=[PrometheusMetricReader()])
        )
    except Exception as exc:  # noqa: BLE001 - metrics are optional, never fatal
        log.warning("metrics disabled: %s", exc)


def spans_recorded() -> bool:
    """Whether spans go anywhere: an SDK tracer provider with at least one span processor (an exporter,
    or a test's in-memory one). Per-event spans on the event bus cost tens of µs each; when nothing
    records them the bus only carries the ``traceparent`` along, so logs keep the request's trace id."""
    active = getattr(trace.get_tracer_provider(), "_active_span_processor", None)
    if active is None:
        return False  # the API's no-op provider
    return bool(getattr(active, "_span_processors", (True,)))


def instrument_fastapi(app: Any) -> None:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    # One server span per request (trace ids for the logs and the events it raises, HTTP metrics); no
    # internal spans per ASGI receive/send: they tripled the spans per request for nothing anyone reads.
    FastAPIInstrumentor.instrument_app(
        app, excluded_urls="healthz,readyz,metrics", exclude_spans=["receive", "send"]
    )


def instrument_engine(engine: Any) -> None:
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    SQLAlchemyInstrumentor().instrument(engine=engine.sync_engine)


def grpc_server_interceptors() -> list[Any]:
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor()]


def grpc_client_interceptors() -> list[Any]:
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors())


def current_trace_id() -> str:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""
