"""Tasks: register one or a batch, find one, list, cancel, and a task's story (the portal's
timeline). Hot-path reads and writes run on a psycopg connection of the hot pool."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.intake import Registration, Rejection, validate_registration
from service.domain.states import TaskState
from service.features.errors import TaskAlreadyFinal
from service.features.ids import no_such_task, require_task_id
from service.features.paging import Page, fetch_page
from service.observability.traces import current_traceparent
from service.store import event_deliveries as delivery_store
from service.store import portal as portal_store
from service.store import tasks as task_store
from service.store.db import IntakeConnection
from service.store.event_deliveries import DeliveryView
from service.store.history import POLL_HISTORY_LIMIT
from service.store.portal import TaskStory
from service.store.tasks import TaskConnection, TaskRow

__all__ = [
    "POLL_HISTORY_LIMIT",
    "BatchOutcome",
    "CheckedBatch",
    "DeliveryView",
    "IntakeConnection",
    "TaskConnection",
    "TaskRow",
    "TaskStory",
]


async def register_task(
    conn: IntakeConnection, client_id: int, registration: Registration, now: datetime
) -> tuple[TaskRow, bool]:
    """Register a checked task; the stored task and whether this call created it."""
    return await task_store.register_task(conn, client_id, registration, now, current_traceparent())


@dataclass(frozen=True, slots=True)
class CheckedBatch:
    """A batch's entries checked one by one, and the distinct valid ones to register."""

    checked: list[Registration | Rejection]
    distinct: list[Registration]


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    task_id: str | None
    outcome: Literal["created", "existing", "rejected"]
    detail: str | None = None

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"task_id": self.task_id, "outcome": self.outcome}
        if self.outcome == "rejected":
            body["detail"] = self.detail
        return body


def check_batch(entries: Sequence[Any], now: datetime, ttl: timedelta) -> CheckedBatch:
    """Each entry checked on its own (an invalid one is rejected alone); a task_id given twice
    is registered once."""
    checked = [validate_registration(entry, now=now, ttl=ttl) for entry in entries]
    distinct: dict[str, Registration] = {}
    for outcome in checked:
        if isinstance(outcome, Registration):
            distinct.setdefault(outcome.task_id, outcome)
    return CheckedBatch(checked, list(distinct.values()))


async def register_batch(
    conn: TaskConnection, client_id: int, batch: CheckedBatch, now: datetime
) -> set[str]:
    """Register the batch's distinct valid tasks in one statement; the task_ids that were new."""
    if not batch.distinct:
        return set()
    return await task_store.register_tasks(
        conn, client_id, batch.distinct, now, current_traceparent()
    )


def batch_outcomes(batch: CheckedBatch, created: set[str]) -> list[BatchOutcome]:
    """One outcome per entry, in order; only the first occurrence of a new task_id is created."""
    left = set(created)
    outcomes: list[BatchOutcome] = []
    for outcome in batch.checked:
        if isinstance(outcome, Rejection):
            outcomes.append(BatchOutcome(outcome.task_id, "rejected", outcome.detail))
        elif outcome.task_id in left:
            left.discard(outcome.task_id)
            outcomes.append(BatchOutcome(outcome.task_id, "created"))
        else:
            outcomes.append(BatchOutcome(outcome.task_id, "existing"))
    return outcomes


async def find_task(conn: TaskConnection, client_id: int, task_id: str) -> TaskRow:
    """The client's task; NotFound when it has none by that id."""
    row = await task_store.find_task(conn, client_id, require_task_id(task_id))
    if row is None:
        raise no_such_task(task_id)
    return row


async def list_tasks(
    conn: TaskConnection,
    client_id: int,
    *,
    state: TaskState | None,
    before_id: int | None,
    size: int,
) -> Page[TaskRow]:
    """The client's tasks, newest first, below row id `before_id`."""
    return await fetch_page(
        lambda limit: task_store.list_tasks(
            conn, client_id, state=state, before_id=before_id, limit=limit
        ),
        size,
    )


async def cancel_task(conn: TaskConnection, client_id: int, task_id: str, now: datetime) -> TaskRow:
    """Cancel a pending task; NotFound, or TaskAlreadyFinal when it has a final state."""
    outcome, row = await task_store.cancel_task(conn, client_id, require_task_id(task_id), now)
    if outcome == "not_found" or row is None:
        raise no_such_task(task_id)
    if outcome == "already_final":
        raise TaskAlreadyFinal(
            f"task {task_id!r} is already {row.state}; only a pending task can be cancelled"
        )
    return row


@dataclass(frozen=True, slots=True)
class TaskWithStory:
    task: TaskRow
    story: TaskStory
    deliveries: list[DeliveryView]


async def task_with_story(
    conn: TaskConnection, session: AsyncSession, client_id: int, task_id: str
) -> TaskWithStory:
    """A task with its polls, its event and every delivery attempt of that event."""
    row = await find_task(conn, client_id, task_id)
    story = await portal_store.find_task_story(session, client_id, task_id)
    if story is None:
        raise no_such_task(task_id)
    deliveries = (
        await delivery_store.list_event_deliveries(session, story.event_pk)
        if story.event_pk is not None
        else []
    )
    return TaskWithStory(row, story, deliveries)
