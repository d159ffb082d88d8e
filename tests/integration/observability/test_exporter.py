"""The metrics port of a worker or scheduler (service/observability/exporter.py): it serves the
process's metrics, and a port already taken is logged, never a reason to stop."""

from __future__ import annotations

import socket

import httpx
import pytest

from service.config import Settings
from service.observability.exporter import start_metrics_exporter


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_the_exporter_serves_this_processs_metrics(settings: Settings) -> None:
    port = free_port()

    start_metrics_exporter(settings, port, "worker")

    response = httpx.get(f"http://{settings.metrics_host}:{port}/metrics", timeout=5.0)
    assert response.status_code == 200
    assert "phonebridge_" in response.text


def test_a_taken_port_is_logged_and_the_process_runs_on(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind((settings.metrics_host, 0))
        taken.listen()
        start_metrics_exporter(settings, taken.getsockname()[1], "scheduler")

    assert "metrics.exporter_failed" in caplog.messages
