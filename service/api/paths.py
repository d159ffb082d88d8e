"""The path parameters that name one of the client's resources: `task_id: TaskIdPath`,
`event_id: EventIdPath`, `subscription_id: SubscriptionIdPath`, and the 404 each answers.

Text that breaks the shape every id of its kind has cannot name anything, so the dependency answers
404 without a query; that also keeps characters Postgres refuses (NUL) away from it. Each depends
on ClientDep so that a call without a valid key still answers 401 first.
"""

# No `from __future__ import annotations`: FastAPI reads the dependency's parameter annotation,
# which names the factory's arguments, at run time.
import re
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Path

from service.api.deps import ClientDep
from service.api.errors import ApiProblem, not_found
from service.domain.ids import PUBLIC_ID_MAX_LENGTH, PUBLIC_ID_SHAPE
from service.domain.intake import TASK_ID_MAX_LENGTH, TASK_ID_PATTERN


def no_such_task(task_id: str) -> ApiProblem:
    return not_found(f"no task {task_id[:TASK_ID_MAX_LENGTH]!r} registered by this client")


def no_such_event(event_id: str) -> ApiProblem:
    return not_found(f"no event {event_id[:PUBLIC_ID_MAX_LENGTH]!r} for this client")


def no_such_subscription(subscription_id: str) -> ApiProblem:
    return not_found(f"no subscription {subscription_id[:PUBLIC_ID_MAX_LENGTH]!r} for this client")


def _plausible_id(
    name: str, shape: re.Pattern[str], description: str, no_such: Callable[[str], ApiProblem]
) -> Callable[..., Awaitable[str]]:
    async def plausible(
        value: Annotated[str, Path(alias=name, description=description)], client: ClientDep
    ) -> str:
        if shape.fullmatch(value) is None:
            raise no_such(value)
        return value

    return plausible


TaskIdPath = Annotated[
    str,
    Depends(_plausible_id("task_id", TASK_ID_PATTERN, "The upstream task_id.", no_such_task)),
]
EventIdPath = Annotated[
    str,
    Depends(_plausible_id("event_id", PUBLIC_ID_SHAPE, "An event id, `evt_...`.", no_such_event)),
]
SubscriptionIdPath = Annotated[
    str,
    Depends(
        _plausible_id(
            "subscription_id",
            PUBLIC_ID_SHAPE,
            "A subscription id, `sub_...`.",
            no_such_subscription,
        )
    ),
]
