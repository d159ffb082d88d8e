"""The path parameters that name one of the client's resources: `task_id: TaskIdPath`,
`event_id: EventIdPath`, `subscription_id: SubscriptionIdPath`.

Text that breaks the shape every id of its kind has cannot name anything: the feature layer's
rule (service/features/ids.py) answers 404 without a query, and keeps characters Postgres
refuses (NUL) away from it. Each depends on ClientDep so that a call without a valid key still
answers 401 first.
"""

# No `from __future__ import annotations`: FastAPI reads the dependency's parameter annotation,
# which names the factory's arguments, at run time.
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Path

from service.api.deps import ClientDep
from service.features.ids import (
    require_event_id,
    require_job_id,
    require_subscription_id,
    require_task_id,
)


def _plausible_id(
    name: str, require: Callable[[str], str], description: str
) -> Callable[..., Awaitable[str]]:
    async def plausible(
        value: Annotated[str, Path(alias=name, description=description)], client: ClientDep
    ) -> str:
        return require(value)

    return plausible


TaskIdPath = Annotated[
    str, Depends(_plausible_id("task_id", require_task_id, "The upstream task_id."))
]
EventIdPath = Annotated[
    str, Depends(_plausible_id("event_id", require_event_id, "An event id, `evt_...`."))
]
SubscriptionIdPath = Annotated[
    str,
    Depends(
        _plausible_id("subscription_id", require_subscription_id, "A subscription id, `sub_...`.")
    ),
]
JobIdPath = Annotated[
    str, Depends(_plausible_id("job_id", require_job_id, "A check job id, `job_...`."))
]
