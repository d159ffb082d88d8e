"""Traces: one trace per task, from the request that registered or submitted it, through each of
its polls, to every webhook attempt of its event, across the API, the scheduler and the worker.

On only when OTEL_EXPORTER_OTLP_ENDPOINT is set (`Settings.otel_exporter_otlp_endpoint`): each
process then exports its spans over OTLP/HTTP (protobuf) to `<endpoint>/v1/traces`, or to
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as given; the SDK reads the other standard variables itself
(OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER, OTEL_EXPORTER_OTLP_HEADERS...).
Off, nothing of the SDK is imported and every hook below returns at its first line: no span
object is made and no column is written.

How one task's spans find each other, since its work crosses processes and batches:
- the API's request span (FastAPI's own OpenTelemetry support, given this module's provider) is
  the task's root; its W3C `traceparent` is stored on the task row (`tasks.traceparent`);
- each poll is a span whose parent is that stored traceparent, made after the call from its
  measured start and end (a task handed back unpolled makes none), linked to the Celery message
  that carried its batch (the Celery instrumentation joins the scheduler's publish and the
  worker's run of that message);
- the poll that brings the final state leaves its traceparent on the event (`events.traceparent`),
  and each webhook attempt is a span under it (under the task's root when the deadline sweep
  ended the task, with no poll).
Batches, not tasks, are what the scheduler claims and Celery carries, so those spans are linked
rather than parents: a span has one parent, and a batch holds many tasks' traces.

The upstream calls and webhook sends do not go through httpx objects (service/upstream/
transport.py explains why), so the httpx instrumentation would see nothing; the poll and attempt
spans carry the HTTP attributes instead. No traceparent header is added to webhooks: the
contract's headers are the subscriber's, and a trace id is ours.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from service.config import Settings
from service.domain.answers import RawAnswer

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer

TRACES_PATH = "/v1/traces"
TRACER_NAME = "phonebridge"

Attributes = Mapping[str, str | int | float | bool]


@dataclass(frozen=True)
class Tracing:
    """The process's tracer provider (exporting in the background) and its tracer."""

    provider: TracerProvider
    tracer: Tracer
    celery_instrumented: bool


# The process's tracing; None while traces are off. One per process, as OpenTelemetry's own
# providers are; tests start and stop it around the tests that need it.
_tracing: Tracing | None = None


def traces_endpoint(settings: Settings) -> str | None:
    """Where spans are sent (None: traces are off)."""
    base = settings.otel_exporter_otlp_endpoint
    if not base:
        return None
    return os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or base.rstrip("/") + TRACES_PATH


def start_tracing(settings: Settings, process: str, *, celery: bool = False) -> Tracing | None:
    """Turn traces on for this process when the settings name an endpoint (None otherwise);
    `process` (api, worker, scheduler) names the service unless OTEL_SERVICE_NAME does; `celery`
    instruments Celery's publishing and running of messages. A second call answers the first's
    tracing."""
    global _tracing
    endpoint = traces_endpoint(settings)
    if endpoint is None:
        return None
    if _tracing is not None:
        return _tracing
    # Imported here, so that a process with traces off never loads the SDK.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes: dict[str, str] = {"phonebridge.process": process}
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attributes[SERVICE_NAME] = f"phonebridge-{process}"
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    if celery:
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        CeleryInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    _tracing = Tracing(provider, provider.get_tracer(TRACER_NAME), celery)
    return _tracing


def stop_tracing() -> None:
    """Send the spans still buffered and turn traces off (process shutdown, tests)."""
    global _tracing
    tracing, _tracing = _tracing, None
    if tracing is None:
        return
    if tracing.celery_instrumented:
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        CeleryInstrumentor().uninstrument()  # type: ignore[no-untyped-call]
    tracing.provider.shutdown()


def flush_traces() -> None:
    """Export every span ended so far (tests; a process about to stop)."""
    if _tracing is not None:
        _tracing.provider.force_flush()


def tracing_on() -> bool:
    """Whether this process records spans: callers skip building their attributes otherwise."""
    return _tracing is not None


def upstream_call_attributes(answer: RawAnswer, code: str, request_id: str | None) -> Attributes:
    """An upstream call's span attributes: its HTTP status or transport error, and what upstream
    answered (the outcome's code, its request id)."""
    attributes: dict[str, str | int] = {"phonebridge.upstream.code": code}
    if answer.status_code is not None:
        attributes["http.response.status_code"] = answer.status_code
    if answer.transport_error is not None:
        attributes["error.type"] = answer.transport_error.value
    if request_id is not None:
        attributes["phonebridge.upstream.request_id"] = request_id
    return attributes


def current_traceparent() -> str | None:
    """The traceparent of the span now current (the API's request span), to store on the row
    the request writes; None while traces are off or no span is recording."""
    if _tracing is None:
        return None
    from opentelemetry import trace

    return _traceparent_of(trace.get_current_span().get_span_context())


def record_span(
    name: str,
    *,
    parent: str | None,
    started_at: datetime,
    ended_at: datetime,
    attributes: Attributes,
    client: bool = True,
    error: str | None = None,
) -> str | None:
    """Record a span that already happened (a poll, a webhook attempt, an upstream submit) as a
    child of the `parent` traceparent (a root without one), linked to the span now current (the
    Celery message of its batch, when there is one); answers its own traceparent, for what it
    caused. None while traces are off."""
    if _tracing is None:
        return None
    from opentelemetry import trace
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode

    context = _context_of(parent)
    current = trace.get_current_span().get_span_context()
    linked = current.is_valid and f"{current.span_id:016x}" not in (parent or "")
    links = [Link(current)] if linked else []
    span = _tracing.tracer.start_span(
        name,
        context=context,
        kind=SpanKind.CLIENT if client else SpanKind.INTERNAL,
        attributes=dict(attributes),
        links=links,
        start_time=_nanoseconds(started_at),
    )
    if error is not None:
        span.set_status(Status(StatusCode.ERROR, error))
    span.end(end_time=_nanoseconds(ended_at))
    return _traceparent_of(span.get_span_context())


def _nanoseconds(moment: datetime) -> int:
    return round(moment.timestamp() * 1_000_000_000)


def _traceparent_of(span_context: Any) -> str | None:
    if not span_context.is_valid:
        return None
    return (
        f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-"
        f"{int(span_context.trace_flags):02x}"
    )


def _context_of(traceparent: str | None) -> Any:
    """The context whose parent is `traceparent` (an empty one, for a root, when it is None or
    cannot be read)."""
    from opentelemetry.context import Context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if traceparent is None:
        return Context()
    return TraceContextTextMapPropagator().extract({"traceparent": traceparent}, Context())
