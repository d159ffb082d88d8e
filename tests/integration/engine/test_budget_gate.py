"""The daily check budget as scheduled submits are marked (service/engine/budget_gate.py), on the
real ledger: each marked submit's check is counted on the day, a client past its limit has the
rest of its submits refused unmarked, a submit no longer ours gives its check back, a client
without a limit is never counted, and the marked keep the batch's order."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.domain.budgets import utc_day
from service.engine.budget_gate import begin_within_budget
from service.store.budgets import checks_on
from service.store.db import transaction
from tests.support.factories import insert_client


@dataclass(frozen=True)
class Submit:
    id: int
    client_id: int


async def test_marks_within_each_clients_budget_and_counts_only_what_it_marked(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    limited = await insert_client(sessions)
    unlimited = await insert_client(sessions)
    async with transaction(sessions) as session:
        await session.execute(
            text("UPDATE clients SET max_checks_per_day = 2 WHERE id = :id"), {"id": limited}
        )
    batch = [
        Submit(1, limited),
        Submit(2, unlimited),
        Submit(3, limited),  # no longer ours: its check is given back
        Submit(4, limited),
        Submit(5, limited),  # past the limit of 2
        Submit(6, unlimited),
    ]
    marked_in_turn: list[int] = []

    async def begin(submit: Submit) -> bool:
        marked_in_turn.append(submit.id)
        return submit.id != 3

    now = utc_now()
    async with transaction(sessions) as session:
        budgeted = await begin_within_budget(session, batch, begin, default_limit=0, now=now)
        counted = await checks_on(session, limited, utc_day(now))
        uncounted = await checks_on(session, unlimited, utc_day(now))

    assert [s.id for s in budgeted.began] == [1, 2, 4, 6]
    assert [s.id for s in budgeted.over_budget] == [5]
    assert budgeted.counted == {1: utc_day(now), 4: utc_day(now)}
    assert (counted, uncounted) == (2, 0)
    # Client by client in id order, each client's submits in the batch's order.
    by_client = sorted(batch, key=lambda s: (s.client_id, batch.index(s)))
    assert marked_in_turn == [s.id for s in by_client if s.id != 5]
