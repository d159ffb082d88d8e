"""The portal's overview of one client: tasks by state, the upstream pause, the trust in its
callbacks, and what the charts of the last hours are drawn from."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.callback_trust import CallbackRecord
from service.domain.states import TaskState
from service.domain.verdicts import Verdict, verdict_of
from service.store import portal as portal_store
from service.store.callback_trust import callback_record
from service.store.portal import (
    CHART_ROW_CAP,
    COUNT_CAP,
    AnswerHour,
    DeliveryHour,
    FinishedHour,
)
from service.upstream.pause import PauseState, read_pause

__all__ = ["CHART_ROW_CAP", "COUNT_CAP", "DeliveryHour", "FinishedHour"]


@dataclass(frozen=True, slots=True)
class VerdictHour:
    """Tasks completed in one hour with one verdict (None: a phone_status of no verdict)."""

    hour: datetime
    verdict: Verdict | None
    n: int


def count_verdicts(answers: Sequence[AnswerHour]) -> list[VerdictHour]:
    """The hourly answers counted by their verdict, hour by hour."""
    counts: Counter[tuple[datetime, Verdict | None]] = Counter()
    for answer in answers:
        counts[answer.hour, verdict_of(answer.phone_status)] += answer.n
    return [VerdictHour(hour, verdict, n) for (hour, verdict), n in counts.items()]


@dataclass(frozen=True, slots=True)
class Overview:
    # Each count capped at COUNT_CAP + 1.
    counts: list[tuple[TaskState, int]]
    pause: PauseState | None
    callbacks: CallbackRecord
    finished: list[FinishedHour]
    verdicts: list[VerdictHour]
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
        verdicts=count_verdicts(await portal_store.answers_by_hour(session, client_id, since)),
        delivered=await portal_store.delivery_outcomes_by_hour(session, client_id, since),
    )
