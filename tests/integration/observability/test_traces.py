"""Traces from intake to webhook (service/observability/traces.py), exported over OTLP/HTTP to a
real receiver on loopback that decodes the protobuf with opentelemetry-proto: one task's spans,
from POST /v1/tasks or /v1/checks through its polls (a real Celery worker and the scheduler,
against the simulator) to each webhook attempt at a real receiver, share one trace id and hang
from the right parents."""

from __future__ import annotations

import gzip
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.observability.traces import flush_traces, start_tracing, stop_tracing
from service.sim.server import SimServer
from tests.support.api import api_client
from tests.support.checks import PHONE
from tests.support.commands import clean_environment
from tests.support.engine import Processes, running_engine
from tests.support.factories import new_client
from tests.support.receivers import Receiver, Reply
from tests.support.rows import cancel_pending_tasks
from tests.support.settings import TEST_SECRET_KEY, webhook_settings
from tests.support.upstream import API_ID, API_SECRET
from tests.support.waiting import wait_until_async


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str
    links: tuple[str, ...]
    attributes: dict[str, Any]


class OtlpReceiver:
    """An OTLP/HTTP trace receiver: POST /v1/traces with an ExportTraceServiceRequest."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                ok = self.path == "/v1/traces" and (
                    self.headers.get("Content-Type") == "application/x-protobuf"
                )
                if ok:
                    receiver.add(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if ok else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            service = next(
                a.value.string_value
                for a in resource_spans.resource.attributes
                if a.key == "service.name"
            )
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    with self.lock:
                        self.spans.append(_received(service, span))

    def received(self) -> list[ReceivedSpan]:
        with self.lock:
            return list(self.spans)


def _received(service: str, span: Span) -> ReceivedSpan:
    attributes: dict[str, Any] = {}
    for attribute in span.attributes:
        value = attribute.value
        attributes[attribute.key] = getattr(value, value.WhichOneof("value"))
    return ReceivedSpan(
        service=service,
        name=span.name,
        kind=span.kind,
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_id=span.parent_span_id.hex(),
        links=tuple(link.span_id.hex() for link in span.links),
        attributes=attributes,
    )


@pytest.fixture
def otlp() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    receiver.thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


@pytest.fixture
def traced_settings(
    database_url: str, redis_url: str, fresh_sim: SimServer, otlp: OtlpReceiver
) -> Iterator[Settings]:
    """The engine's settings with traces on, exported to `otlp`; this process traces (and
    instruments Celery) for the test only."""
    settings = webhook_settings(
        database_url,
        redis_url,
        upstream_base_url=fresh_sim.base_url,
        upstream_max_rps=500.0,
        scheduler_tick_s=0.05,
        poll_initial_s=0.2,
        poll_max_s=0.4,
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp.endpoint,
    )
    start_tracing(settings, "worker", celery=True)
    try:
        yield settings
    finally:
        stop_tracing()


SERVER = Span.SpanKind.SPAN_KIND_SERVER


async def _attempts_recorded(
    api: httpx.AsyncClient, headers: dict[str, str], task_id: str, count: int
) -> bool:
    events = (await api.get("/v1/events", headers=headers)).json()["data"]
    mine = [e for e in events if e["data"]["task_id"] == task_id]
    if not mine:
        return False
    deliveries = (await api.get(f"/v1/events/{mine[0]['id']}/deliveries", headers=headers)).json()
    return bool(sum(d["attempt_count"] for d in deliveries["data"]) >= count)


def _task_spans(otlp: OtlpReceiver, task_id: str, attempts: int) -> list[ReceivedSpan] | None:
    flush_traces()
    spans = otlp.received()
    polls = [s for s in spans if s.attributes.get("phonebridge.task_id") == task_id]
    if not polls or not any(p.attributes["phonebridge.decision"] == "complete" for p in polls):
        return None
    trace = [s for s in spans if s.trace_id == polls[0].trace_id]
    if sum(s.name == "webhook.attempt" for s in trace) < attempts:
        return None
    return trace


def _assert_one_task_trace(
    trace: list[ReceivedSpan], all_spans: list[ReceivedSpan], request: str
) -> None:
    """registration (the API's request span) -> each poll -> the final poll -> every attempt."""
    by_id = {s.span_id: s for s in trace}
    [registration] = [s for s in trace if s.kind == SERVER]
    assert registration.name == request
    assert registration.parent_id == ""
    polls = [s for s in trace if s.name == "task.poll"]
    assert len(polls) >= 2  # the simulator's task answers pending first
    assert all(p.parent_id == registration.span_id for p in polls)
    assert all(p.attributes["http.response.status_code"] in (200, 400) for p in polls)
    [final] = [p for p in polls if p.attributes["phonebridge.decision"] == "complete"]
    attempts = [s for s in trace if s.name == "webhook.attempt"]
    assert len(attempts) == 2
    assert all(a.parent_id == final.span_id for a in attempts)
    assert sorted(a.attributes["http.response.status_code"] for a in attempts) == [200, 500]
    assert {a.attributes["phonebridge.attempt"] for a in attempts} == {1, 2}
    # Every span of the trace hangs from one of its own, up to the registration.
    assert all(s.parent_id in by_id for s in trace if s is not registration)
    # Each poll is linked to the Celery message that carried its batch, whose run in the worker
    # is a child of its publishing by the scheduler.
    celery = {s.span_id: s for s in all_spans if "phonebridge.poll_batch" in s.name}
    for poll in polls:
        [message] = [celery[link] for link in poll.links if link in celery]
        publish = celery.get(message.parent_id)
        assert publish is not None
        assert publish.name.startswith("apply_async")


async def _start_task(
    api: httpx.AsyncClient, headers: dict[str, str], route: str, sim: SimServer
) -> str:
    """A task that answers pending twice, then ring: registered, or submitted as a check."""
    if route == "/v1/tasks":
        task_id = f"sim-ring-2-{secrets.token_hex(3)}"
        started = await api.post(route, json={"task_id": task_id}, headers=headers)
    else:
        sim.control.script_number(PHONE, "ring-2")
        started = await api.post(route, json={"phone_number": PHONE}, headers=headers)
    assert started.status_code == 201, started.text
    return str(started.json()["task_id"])


@pytest.mark.parametrize("route", ["/v1/tasks", "/v1/checks"])
async def test_a_tasks_spans_form_one_trace_from_its_request_to_every_webhook_attempt(
    route: str,
    traced_settings: Settings,
    otlp: OtlpReceiver,
    receiver: Receiver,
    fresh_sim: SimServer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    path = f"/{secrets.token_hex(6)}"
    receiver.script(path, Reply(status=500), default=Reply(status=200))
    async with api_client(traced_settings) as api:
        client = await new_client(traced_settings, sessions)
        subscribed = await api.post(
            "/v1/subscriptions", json={"url": receiver.url(path)}, headers=client.headers
        )
        assert subscribed.status_code == 201, subscribed.text
        task_id = await _start_task(api, client.headers, route, fresh_sim)
        async with running_engine(traced_settings, deliver=True):
            await wait_until_async(
                partial(_attempts_recorded, api, client.headers, task_id, 2),
                what="both attempts written back",
                timeout_s=30,
            )
    trace = await wait_until_async(
        partial(_task_spans, otlp, task_id, 2), what="the task's spans exported"
    )
    _assert_one_task_trace(trace, otlp.received(), f"POST {route}")
    submits = [s for s in trace if s.name == "upstream.submit"]
    assert len(submits) == (1 if route == "/v1/checks" else 0)


@pytest.mark.slow  # real `phonebridge worker` and `scheduler` processes
async def test_the_api_worker_and_scheduler_processes_each_trace_under_their_own_name(
    database_url: str,
    redis_url: str,
    fresh_sim: SimServer,
    otlp: OtlpReceiver,
    receiver: Receiver,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    await cancel_pending_tasks(sessions)  # earlier tests' work would be claimed here
    api_settings = webhook_settings(
        database_url, redis_url, OTEL_EXPORTER_OTLP_ENDPOINT=otlp.endpoint
    )
    env = clean_environment(
        PHONEBRIDGE_DATABASE_URL=database_url,
        PHONEBRIDGE_REDIS_URL=redis_url,
        PHONEBRIDGE_UPSTREAM_BASE_URL=fresh_sim.base_url,
        PHONEBRIDGE_UPSTREAM_API_ID=API_ID,
        PHONEBRIDGE_UPSTREAM_API_SECRET=API_SECRET,
        PHONEBRIDGE_SECRET_KEY=TEST_SECRET_KEY,
        PHONEBRIDGE_WEBHOOK_ALLOW_PRIVATE="true",
        PHONEBRIDGE_WEBHOOK_RETRY_SCHEDULE="0.2,0.2",
        PHONEBRIDGE_POLL_INITIAL_S="0.2",
        PHONEBRIDGE_POLL_MAX_S="0.4",
        PHONEBRIDGE_SCHEDULER_TICK_S="0.05",
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="100",  # milliseconds between exports, not the default 5 s
    )
    path = f"/{secrets.token_hex(6)}"
    receiver.script(path, Reply(status=500), default=Reply(status=200))
    processes = Processes(env, tmp_path)
    processes.start("worker")
    processes.start("scheduler")
    try:
        async with api_client(api_settings) as api:
            client = await new_client(api_settings, sessions)
            subscribed = await api.post(
                "/v1/subscriptions", json={"url": receiver.url(path)}, headers=client.headers
            )
            assert subscribed.status_code == 201, subscribed.text
            task_id = await _start_task(api, client.headers, "/v1/tasks", fresh_sim)
            trace = await wait_until_async(
                partial(_task_spans, otlp, task_id, 2),
                what="the task's spans exported by the processes",
                timeout_s=60,
            )
    finally:
        processes.stop_all()
        stop_tracing()  # the API's, started by create_app in this process
    _assert_one_task_trace(trace, otlp.received(), "POST /v1/tasks")
    services = {s.name: s.service for s in trace}
    assert services["POST /v1/tasks"] == "phonebridge-api"
    assert services["task.poll"] == "phonebridge-worker"
    assert services["webhook.attempt"] == "phonebridge-worker"
    publishes = {s.service for s in otlp.received() if s.name.startswith("apply_async")}
    assert publishes == {"phonebridge-scheduler"}


def test_with_no_endpoint_no_sdk_is_imported_and_nothing_is_recorded() -> None:
    """Off by default: building the API and the worker's services, and every hook, leave the
    SDK's tracing, its exporter and the Celery instrumentation unimported and record nothing.
    (redis-py imports the SDK's metrics module when it is installed, for metrics it only records
    once an application turns them on; phonebridge does not.)"""
    program = """
import sys
from datetime import UTC, datetime
from service.api.app import create_app
from service.config import build_settings
from service.observability import traces
import service.engine.poller, service.webhooks.batch_delivery, service.checks.submit

settings = build_settings(database_url="postgresql://x/y", redis_url="redis://x")
create_app(settings)
assert traces.start_tracing(settings, "worker", celery=True) is None
assert not traces.tracing_on()
assert traces.current_traceparent() is None
now = datetime.now(UTC)
assert traces.record_span("x", parent=None, started_at=now, ended_at=now, attributes={}) is None
tracing = ("opentelemetry.sdk.trace", "opentelemetry.exporter", "opentelemetry.instrumentation")
loaded = sorted(m for m in sys.modules if m.startswith(tracing))
assert not loaded, loaded
"""
    env = {"PATH": "/usr/bin:/bin", "PHONEBRIDGE_LOG_LEVEL": "WARNING"}
    subprocess.run([sys.executable, "-c", program], check=True, env=env, timeout=60)
