"""`phonebridge scheduler`: the engine's scheduler loop, sending its batches as Celery messages.

The loop itself (service/engine/scheduler.py, its steps put together in service/runtime.py) knows
only the publisher protocols; this process entry point is where they become Celery's, so the
engine never imports the broker's app.
"""

from __future__ import annotations

import asyncio
import signal

from service.config import Settings
from service.observability.exporter import start_metrics_exporter
from service.observability.traces import start_tracing, stop_tracing
from service.runtime import run_scheduler_until
from workers.app import (
    celery_delivery_publisher,
    celery_poll_publisher,
    celery_submit_publisher,
    create_celery_app,
)


def run_scheduler(settings: Settings) -> int:
    """`phonebridge scheduler`: run until SIGINT or SIGTERM."""
    settings.require_database_url()
    settings.require_redis_url()
    return asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    # Before the app: its messages carry the trace context of their publishing (OTEL_* set).
    start_tracing(settings, "scheduler", celery=True)
    celery_app = create_celery_app(settings)
    start_metrics_exporter(settings, settings.scheduler_metrics_port, "scheduler")
    try:
        await run_scheduler_until(
            stop,
            settings,
            publish_poll=celery_poll_publisher(celery_app),
            publish_delivery=celery_delivery_publisher(celery_app),
            publish_submit=celery_submit_publisher(celery_app),
        )
    finally:
        stop_tracing()
    return 0
