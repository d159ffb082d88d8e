"""The states a task and a webhook delivery can be in, and the events a task's end produces.

Each is defined once here and used everywhere: the tables' CHECK constraints, the API's schemas
(where they show as enums), the store's SQL and the webhook sender. A `StrEnum` member is its
value wherever it goes: JSON (orjson, pydantic), SQL parameters and f-strings.
"""

from __future__ import annotations

from enum import StrEnum


class TaskState(StrEnum):
    """Where a registered task stands; every state but `pending` is final."""

    PENDING = "pending"
    COMPLETED = "completed"
    EXPIRED = "expired"
    FAILED = "failed"
    CANCELLED = "cancelled"


class EventType(StrEnum):
    """What a client is told about, once per task: how its task ended."""

    TASK_COMPLETED = "task.completed"
    TASK_EXPIRED = "task.expired"
    TASK_FAILED = "task.failed"


class DeliveryState(StrEnum):
    """Where one event's webhook to one subscription stands; `pending` retries."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


# A cancelled task is the client's own doing, so it produces no event.
EVENT_TYPE_OF_STATE: dict[TaskState, EventType] = {
    TaskState.COMPLETED: EventType.TASK_COMPLETED,
    TaskState.FAILED: EventType.TASK_FAILED,
    TaskState.EXPIRED: EventType.TASK_EXPIRED,
}
