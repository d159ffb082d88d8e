"""The daily check budget at the moment a scheduled submit is marked `submitting`, for every
purpose alike (re-checks, service/engine/scheduled_submits.py; check job items,
service/engine/job_items.py).

`begin_within_budget` marks a batch's submits in the caller's transaction, counting each one's
check in the client's ledger first (service/store/budgets.py): a submit whose client has no check
left that day is not marked. Checks are counted client by client in id order, so two workers'
batches lock the ledger's rows in the same order and neither waits for the other in a cycle; a
submit counted but not marked (no longer ours) gives its check back at once.

`wait_for_budget` hands the refused submits back unsent, due at the next UTC midnight, and pauses
their clients' check jobs for the budget (the scheduler resumes them when it allows again,
service/engine/budgets.py). A submit handed back unsent after its mark gives its check back
through the caller's own hand-back (`counted` names the day it was counted on).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Generic, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.domain.budgets import next_utc_midnight, utc_day
from service.observability.metrics import record_over_budget
from service.store.budgets import daily_limits, give_back_checks, pause_jobs_for_budget, take_checks
from service.store.db import transaction

log = logging.getLogger(__name__)


class Submit(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def client_id(self) -> int: ...


S = TypeVar("S", bound=Submit)


@dataclass
class BudgetedBegin(Generic[S]):
    """The submits marked (in the batch's order), those past their client's budget (not marked),
    and the day each marked submit's check was counted on (by submit id), when its client has a
    budget."""

    began: list[S] = field(default_factory=list)
    over_budget: list[S] = field(default_factory=list)
    counted: dict[int, date] = field(default_factory=dict)


async def begin_within_budget(
    session: AsyncSession,
    submits: Sequence[S],
    begin: Callable[[S], Awaitable[bool]],
    *,
    default_limit: int,
    now: datetime,
) -> BudgetedBegin[S]:
    """Mark each submit with `begin` (True: marked, False: no longer ours) within its client's
    daily check budget; `default_limit` is PHONEBRIDGE_CLIENT_MAX_CHECKS_PER_DAY."""
    day = utc_day(now)
    order = {submit.id: index for index, submit in enumerate(submits)}
    result: BudgetedBegin[S] = BudgetedBegin()
    limits = await daily_limits(session, {submit.client_id for submit in submits}, default_limit)
    spent: set[int] = set()
    for submit in sorted(submits, key=lambda s: (s.client_id, order[s.id])):
        limit = limits.get(submit.client_id)
        if limit is not None and (
            submit.client_id in spent
            or not await take_checks(session, client_id=submit.client_id, day=day, n=1, limit=limit)
        ):
            spent.add(submit.client_id)
            result.over_budget.append(submit)
            continue
        if await begin(submit):
            result.began.append(submit)
            if limit is not None:
                result.counted[submit.id] = day
        elif limit is not None:
            await give_back_checks(session, client_id=submit.client_id, day=day, n=1)
    result.began.sort(key=lambda s: order[s.id])
    return result


async def wait_for_budget(
    sessions: async_sessionmaker[AsyncSession],
    over_budget: Sequence[S],
    hand_back: Callable[[AsyncSession, S, datetime], Awaitable[None]],
    now: datetime,
) -> None:
    """Hand the submits past their client's budget back unsent, due when the next UTC day's
    budget begins (`hand_back(session, submit, due_at)`), and pause their clients' check jobs
    until the budget allows again."""
    if not over_budget:
        return
    tomorrow = next_utc_midnight(now)
    clients = sorted({submit.client_id for submit in over_budget})
    async with transaction(sessions) as session:
        for submit in over_budget:
            await hand_back(session, submit, tomorrow)
        paused = [job for c in clients for job in await pause_jobs_for_budget(session, c, now)]
    for client_id in clients:
        waiting = sum(submit.client_id == client_id for submit in over_budget)
        record_over_budget(client_id, "scheduled", waiting)
        log.info(
            "budget.exhausted",
            extra={
                "client_id": client_id,
                "submits": waiting,
                "jobs_paused": sum(job.client_id == client_id for job in paused),
                "until": tomorrow.isoformat(),
            },
        )
