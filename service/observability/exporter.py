"""The exporter port of a worker or scheduler process: prometheus_client's own HTTP server, in a
daemon thread, serving this process's registry at any path (conventionally /metrics)."""

from __future__ import annotations

import logging

from prometheus_client import start_http_server

from service.config import Settings

log = logging.getLogger(__name__)


def start_metrics_exporter(settings: Settings, port: int, process: str) -> None:
    """Serve this process's metrics on `port` of PHONEBRIDGE_METRICS_HOST; 0 means no exporter.

    A port already taken is a configuration problem of the operator's, not a reason to stop
    polling: it is logged and the process runs on without an exporter.
    """
    if port == 0:
        return
    try:
        start_http_server(port, addr=settings.metrics_host)
    except OSError as error:
        log.error(
            "metrics.exporter_failed",
            extra={"component": process, "port": port, "error_type": type(error).__name__},
        )
        return
    log.info(
        "metrics.exporter_started",
        extra={"component": process, "host": settings.metrics_host, "port": port},
    )
