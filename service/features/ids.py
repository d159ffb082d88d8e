"""One rule for every id a client names: text that breaks the shape every id of its kind has
names nothing, so it is answered "not found" without a query (which also keeps characters
Postgres refuses, NUL, away from it). The 404 words are written once here."""

from __future__ import annotations

from service.domain.intake import TASK_ID_MAX_LENGTH, TASK_ID_PATTERN
from service.domain.public_ids import PUBLIC_ID_MAX_LENGTH, PUBLIC_ID_SHAPE
from service.features.errors import NotFound


def no_such_task(task_id: str) -> NotFound:
    return NotFound("task", f"no task {task_id[:TASK_ID_MAX_LENGTH]!r} registered by this client")


def no_such_event(event_id: str) -> NotFound:
    return NotFound("event", f"no event {event_id[:PUBLIC_ID_MAX_LENGTH]!r} for this client")


def no_such_subscription(subscription_id: str) -> NotFound:
    return NotFound(
        "subscription",
        f"no subscription {subscription_id[:PUBLIC_ID_MAX_LENGTH]!r} for this client",
    )


def require_task_id(task_id: str) -> str:
    """The task_id, or NotFound when it cannot be one."""
    if TASK_ID_PATTERN.fullmatch(task_id) is None:
        raise no_such_task(task_id)
    return task_id


def require_event_id(event_id: str) -> str:
    if PUBLIC_ID_SHAPE.fullmatch(event_id) is None:
        raise no_such_event(event_id)
    return event_id


def require_subscription_id(subscription_id: str) -> str:
    if PUBLIC_ID_SHAPE.fullmatch(subscription_id) is None:
        raise no_such_subscription(subscription_id)
    return subscription_id


def no_such_job(job_id: str) -> NotFound:
    return NotFound("check job", f"no check job {job_id[:PUBLIC_ID_MAX_LENGTH]!r} for this client")


def require_job_id(job_id: str) -> str:
    if PUBLIC_ID_SHAPE.fullmatch(job_id) is None:
        raise no_such_job(job_id)
    return job_id
