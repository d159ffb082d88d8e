"""The Celery app: Redis broker, one queue, thin tasks (workers/tasks.py).

Celery only carries messages. Durability comes from Postgres leases, so messages are acked on
receipt (a killed worker's batch comes due again when its leases end) and nothing waits in the
broker (no ETA/countdown). A task only starts its batch on the process's one engine loop
(service/runtime.py) and returns, so every batch a worker receives is in flight at once and
its leases renewed from the start (service/heartbeat.py); none waits in the broker behind a
slow one while its lease runs out.
"""

from __future__ import annotations

import uuid
import warnings
from typing import Any

from celery import Celery
from celery.signals import worker_process_shutdown, worker_shutdown

from service.config import Settings
from service.engine.scheduler import PollPublisher, SubmitPublisher
from service.observability.exporter import start_metrics_exporter
from service.observability.traces import start_tracing, stop_tracing
from service.runtime import WorkerRuntime
from service.webhooks.dispatch import DeliveryPublisher
from workers.tasks import DELIVER_BATCH_TASK, POLL_BATCH_TASK, SUBMIT_BATCH_TASK, register_tasks

DEFAULT_QUEUE = "phonebridge"
DEFAULT_CONCURRENCY = 4


def create_celery_app(settings: Settings, *, queue: str = DEFAULT_QUEUE) -> Celery:
    """A Celery app for these settings, with the tasks registered. Building it opens nothing: the
    engine runtime starts with the first task."""
    app = Celery("phonebridge", broker=settings.require_redis_url(), set_as_current=False)
    app.conf.update(
        task_default_queue=queue,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=False,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": 3600},
    )
    runtime = WorkerRuntime(settings)
    register_tasks(app, runtime)
    app.conf.phonebridge_runtime = runtime
    return app


def runtime_of(app: Celery) -> WorkerRuntime:
    runtime: WorkerRuntime = app.conf.phonebridge_runtime
    return runtime


def celery_poll_publisher(app: Celery) -> PollPublisher:
    """The scheduler's way to send a poll message: by task name, to the app's queue."""
    queue = app.conf.task_default_queue

    def publish(ids: list[int], lease_token: uuid.UUID, probe: bool) -> None:
        app.send_task(POLL_BATCH_TASK, args=[ids, str(lease_token), probe], queue=queue)

    return publish


def celery_submit_publisher(app: Celery) -> SubmitPublisher:
    """The scheduler's way to send a scheduled submits' message: by task name, to the app's
    queue."""
    queue = app.conf.task_default_queue

    def publish(ids: list[int], lease_token: uuid.UUID) -> None:
        app.send_task(SUBMIT_BATCH_TASK, args=[ids, str(lease_token)], queue=queue)

    return publish


def celery_delivery_publisher(app: Celery) -> DeliveryPublisher:
    """The scheduler's way to send a delivery message: by task name, to the app's queue."""
    queue = app.conf.task_default_queue

    def publish(ids: list[int], lease_token: uuid.UUID) -> None:
        app.send_task(DELIVER_BATCH_TASK, args=[ids, str(lease_token)], queue=queue)

    return publish


def run_worker(settings: Settings, concurrency: int | None) -> int:
    """`phonebridge worker`: a Celery worker with a threads pool, until SIGTERM/SIGINT."""
    settings.require_database_url()
    # Before the app, so that Celery's messages are traced from the first (OTEL_* set only).
    start_tracing(settings, "worker", celery=True)
    app = create_celery_app(settings)
    runtime = runtime_of(app)

    def stop_runtime(**_: Any) -> None:
        runtime.stop()
        stop_tracing()

    worker_shutdown.connect(stop_runtime, weak=False)
    worker_process_shutdown.connect(stop_runtime, weak=False)
    # Open the engine loop, pools and connections before the first message, not within it.
    runtime.start()
    start_metrics_exporter(settings, settings.worker_metrics_port, "worker")
    # Celery's "superuser privileges" warning is about pickled messages, which can run code;
    # this worker accepts JSON only. Under `phonebridge up` as root (a laptop, a container's
    # default user) its six plain lines in the terminal alarmed more than they told.
    warnings.filterwarnings("ignore", message="You're running the worker with superuser")
    worker = _json_logging_worker(app)(
        pool="threads",
        concurrency=concurrency or DEFAULT_CONCURRENCY,
        loglevel=settings.log_level,
        without_gossip=True,
        without_mingle=True,
        without_heartbeat=True,
        optimization="fair",
        quiet=True,  # no plain-text banner: every line the process writes is JSON
    )
    worker.start()
    return int(worker.exitcode or 0)


def _json_logging_worker(app: Celery) -> Any:
    """The app's Worker class, minus the plain-text line Celery prints when SIGTERM or SIGQUIT
    arrives (our own log says the worker stopped)."""
    from celery.apps import worker as celery_worker

    class Worker(app.Worker):  # type: ignore[name-defined,misc]
        def install_platform_tweaks(self, worker: Any) -> None:
            super().install_platform_tweaks(worker)
            # The stubs do not know these; they exist in every Celery 5.
            celery_worker.install_worker_term_handler(worker, verbose=False)  # type: ignore[attr-defined]
            celery_worker.install_worker_term_hard_handler(worker, verbose=False)  # type: ignore[attr-defined]

    return Worker
