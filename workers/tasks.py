"""Thin Celery tasks: ids in, one service call, nothing else. Registered per app by
`register_tasks`, so tests and processes build apps with their own settings."""

from __future__ import annotations

import uuid

from celery import Celery

from service.runtime import WorkerRuntime

POLL_BATCH_TASK = "phonebridge.poll_batch"
DELIVER_BATCH_TASK = "phonebridge.deliver_batch"
SUBMIT_BATCH_TASK = "phonebridge.submit_batch"


def register_tasks(app: Celery, runtime: WorkerRuntime) -> None:
    # shared=False: a shared task would be registered on every app built later in the process,
    # and one app's messages could run against another app's runtime (and settings).
    @app.task(name=POLL_BATCH_TASK, ignore_result=True, shared=False)
    def poll_batch(task_ids: list[int], lease_token: str, probe: bool = False) -> int:
        # Starts the batch on the engine loop and returns: a batch waiting for rate slots and
        # slow answers must not hold a slot while the batches behind it wait in the broker.
        return runtime.call(
            lambda r: r.poller.start_batch(task_ids, uuid.UUID(lease_token), probe=probe)
        )

    @app.task(name=DELIVER_BATCH_TASK, ignore_result=True, shared=False)
    def deliver_batch(delivery_ids: list[int], lease_token: str) -> int:
        # Starts the batch on the engine loop and returns: a dead receiver must not hold a slot.
        return runtime.call(
            lambda r: r.deliveries.start_batch(delivery_ids, uuid.UUID(lease_token))
        )

    @app.task(name=SUBMIT_BATCH_TASK, ignore_result=True, shared=False)
    def submit_batch(submit_ids: list[int], lease_token: str) -> int:
        # Starts the batch on the engine loop and returns: its submits wait for rate slots.
        return runtime.call(lambda r: r.submits.start_batch(submit_ids, uuid.UUID(lease_token)))
