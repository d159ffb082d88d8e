"""The public JSON shapes of the contract, shared by the REST API and the webhook payloads.

A task looks the same in `GET /v1/tasks/{id}`, in `GET /v1/events` and in a webhook body, so there
is exactly one definition of it here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.domain.states import EventType, TaskState
from service.store.tables import Task


class TaskResult(BaseModel):
    phone_number: str
    phone_status: str = Field(
        description="One of ring, connected, empty, busy, turned_off, outside_service_area, "
        "line_abnormal, temp_unavailable; an unknown value from upstream is kept as given."
    )


class TaskError(BaseModel):
    code: str
    message: str
    at: datetime


class TaskOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    task_id: str
    state: TaskState
    result: TaskResult | None
    submitted_at: datetime
    registered_at: datetime
    expires_at: datetime
    completed_at: datetime | None
    next_poll_at: datetime | None
    poll_count: int
    last_error: TaskError | None
    upstream_request_id: str | None
    metadata: dict[str, Any]

    @classmethod
    def from_row(cls, task: Task) -> TaskOut:
        return cls(
            task_id=task.task_id,
            state=TaskState(task.state),  # the CHECK constraint guarantees a TaskState
            result=TaskResult.model_validate(task.result) if task.result else None,
            submitted_at=task.submitted_at,
            registered_at=task.registered_at,
            expires_at=task.expires_at,
            completed_at=task.completed_at,
            next_poll_at=task.next_poll_at,
            poll_count=task.poll_count,
            last_error=TaskError.model_validate(task.last_error) if task.last_error else None,
            upstream_request_id=task.upstream_request_id,
            metadata=task.metadata_,
        )


def task_json(task: Task) -> dict[str, Any]:
    """The task as the contract shows it, ready for a JSON column or body."""
    return TaskOut.from_row(task).model_dump(mode="json")


class EventOut(BaseModel):
    id: str
    type: EventType
    created_at: datetime
    data: TaskOut
