"""The portal's overview of one client: tasks by state, the upstream pause, the trust in its
callbacks, and what the charts of the last hours are drawn from."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.callback_trust import CallbackRecord
from service.domain.states import TaskState
from service.store import portal as portal_store
from service.store.callback_trust import callback_record
from service.store.portal import CHART_ROW_CAP, COUNT_CAP, DeliveryHour, FinishedHour
from service.upstream.pause import PauseState, read_pause

__all__ = ["CHART_ROW_CAP", "COUNT_CAP", "DeliveryHour", "FinishedHour"]


@dataclass(frozen=True, slots=True)
class Overview:
    # Each count capped at COUNT_CAP + 1.
    counts: list[tuple[TaskState, int]]
    pause: PauseState | None
    callbacks: CallbackRecord
    finished: list[FinishedHour]
    delivered: list[DeliveryHour]


async def client_overview(
    session: AsyncSession, redis: Redis[Any], client_id: int, since: datetime
) -> Overview:
    """The client's overview, its charts covering the hours from `since`."""
    counts = await portal_store.count_tasks_by_state(session, client_id)
    return Overview(
        counts=[(state, counts.get(state, 0)) for state in TaskState],
        pause=await read_pause(redis),
        callbacks=await callback_record(session, client_id),
        finished=await portal_store.finished_tasks_by_hour(session, client_id, since),
        delivered=await portal_store.delivery_outcomes_by_hour(session, client_id, since),
    )
