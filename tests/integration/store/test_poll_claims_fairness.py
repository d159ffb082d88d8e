"""The claim (service/store/poll_claims.py) under saturation, on the real database: every client
with due work gets its turn, a client's likeliest answers go first, no task is claimed twice, none
past its deadline."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.domain.schedule import FIRST_POLL_MAX_WAIT_S
from service.store.db import transaction
from service.store.poll_claims import claim_due_tasks
from tests.support.estimates import uniform_estimate
from tests.support.factories import insert_client, insert_tasks

pytestmark = pytest.mark.usefixtures("no_foreign_pending_tasks")


def long_ago() -> datetime:
    # Due a year ago: nothing another test left due competes for the claim.
    return utc_now() - timedelta(days=365)


async def claim(
    sessions: async_sessionmaker[AsyncSession], now: datetime, limit: int
) -> tuple[uuid.UUID, list[int]]:
    async with transaction(sessions) as session:
        return await claim_due_tasks(session, now, lease_s=30, limit=limit)


async def backlog(
    sessions: async_sessionmaker[AsyncSession], size: int, now: datetime, *, ttl_s: float = 10**9
) -> tuple[int, list[int]]:
    client = await insert_client(sessions)
    ids = await insert_tasks(sessions, client, [f"t{i}" for i in range(size)], now=now, ttl_s=ttl_s)
    return client, ids


async def test_a_small_client_is_not_starved_by_a_big_backlog_due_earlier(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = long_ago()
    _, big = await backlog(sessions, 500, now - timedelta(seconds=60))
    _, small = await backlog(sessions, 5, now)
    _, claimed = await claim(sessions, now, limit=20)
    assert set(small) <= set(claimed), "the small client's tasks all get a turn this round"
    assert len(set(claimed) & set(big)) == 15, "the rest of the round goes to the big client"


async def test_clients_with_due_work_share_a_round_equally(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = long_ago()
    clients = [await backlog(sessions, 50, now - timedelta(seconds=i)) for i in range(3)]
    _, claimed = await claim(sessions, now, limit=30)
    assert [len(set(claimed) & set(ids)) for _, ids in clients] == [10, 10, 10]


async def test_within_a_client_the_likeliest_answers_go_first_and_first_polls_before_them(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = long_ago()
    _client, ids = await backlog(sessions, 6, now)
    chances = [0.1, 0.9, None, 0.5, 0.7, 0.3]
    async with transaction(sessions) as session:
        for task_pk, chance in zip(ids, chances, strict=True):
            await session.execute(
                text("UPDATE tasks SET finish_p = :p WHERE id = :id"), {"p": chance, "id": task_pk}
            )
    _, claimed = await claim(sessions, now, limit=3)
    # Never polled (no estimate of it yet) first, then 0.9 and 0.7.
    assert set(claimed) == {ids[2], ids[1], ids[4]}


async def test_no_task_is_claimed_twice_by_concurrent_claimers(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = long_ago()
    clients = [await backlog(sessions, 40, now) for _ in range(4)]
    every = {task for _, ids in clients for task in ids}

    async def round_of(limit: int) -> list[int]:
        return (await claim(sessions, now, limit))[1]

    rounds = await asyncio.gather(*(round_of(25) for _ in range(8)))
    claimed = [task for ids in rounds for task in ids]
    assert len(claimed) == len(set(claimed)), "a task went to two claimers"
    assert set(claimed) <= every
    # Within their leases nothing is claimed again, and the rest of the backlog still is.
    _, rest = await claim(sessions, now, limit=1000)
    assert not set(rest) & set(claimed)
    assert set(rest) | set(claimed) == every


async def test_a_task_past_its_deadline_is_never_claimed(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = long_ago()
    _, expired = await backlog(sessions, 3, now - timedelta(seconds=10), ttl_s=5)
    _, live = await backlog(sessions, 3, now)
    _, claimed = await claim(sessions, now, limit=100)
    assert not set(claimed) & set(expired)
    assert set(live) <= set(claimed)


# --- re-polls before first polls, within a bound -------------------------------------------------

# Answers uniform over (0, END]: a first poll's chance is the share of the bins wholly below its
# age (a step CDF): at age 15 s, bin 18 starts at 13.2 s, so 13.2 / 21.05 = 0.63.
UNIFORM, END = uniform_estimate(up_to_bin=20, total=1000.0)


async def store_estimate(sessions: async_sessionmaker[AsyncSession]) -> str:
    account = f"fair-{uuid.uuid4().hex[:12]}"
    async with transaction(sessions) as session:
        await session.execute(
            text(
                "INSERT INTO completion_estimates (account, client_id, weights, updated_at) "
                "VALUES (:account, 0, :weights, now())"
            ),
            {"account": account, "weights": list(UNIFORM.weights)},
        )
    return account


async def polled_before(
    sessions: async_sessionmaker[AsyncSession], client: int, chances: list[float], due: datetime
) -> list[int]:
    """Tasks of `client` polled before (their chance of an answer at the next poll written),
    due at `due`."""
    ids = await insert_tasks(
        sessions, client, [f"r{uuid.uuid4().hex}" for _ in chances], now=due, ttl_s=10**9
    )
    async with transaction(sessions) as session:
        for task_pk, chance in zip(ids, chances, strict=True):
            await session.execute(
                text("UPDATE tasks SET finish_p = :p, poll_count = 1 WHERE id = :id"),
                {"p": chance, "id": task_pk},
            )
    return ids


async def first_poll(
    sessions: async_sessionmaker[AsyncSession],
    client: int,
    *,
    due: datetime,
    submitted_s_before: float = 0.0,
) -> int:
    submitted = due - timedelta(seconds=submitted_s_before)
    (task_pk,) = await insert_tasks(
        sessions,
        client,
        [f"f{uuid.uuid4().hex}"],
        now=submitted,
        next_poll_in_s=submitted_s_before,
        ttl_s=10**9,
    )
    return task_pk


async def claim_with(
    sessions: async_sessionmaker[AsyncSession], now: datetime, limit: int, account: str
) -> set[int]:
    async with transaction(sessions) as session:
        _, ids = await claim_due_tasks(session, now, lease_s=30, limit=limit, account=account)
    return set(ids)


async def test_likelier_re_polls_go_before_a_first_poll_that_has_not_waited_the_bound(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now, account = long_ago(), await store_estimate(sessions)
    client = await insert_client(sessions)
    likely, less = await polled_before(sessions, client, [0.9, 0.7], now)
    # Registered just now: at age 0 no answer has come (chance 0), and it is due this instant.
    new = await first_poll(sessions, client, due=now)

    assert await claim_with(sessions, now, 2, account) == {likely, less}
    # Without an estimate, a first poll goes first, as it always has.
    other = await insert_client(sessions)
    other_likely, _ = await polled_before(sessions, other, [0.9, 0.7], now)
    other_new = await first_poll(sessions, other, due=now)
    async with transaction(sessions) as session:
        _, ids = await claim_due_tasks(session, now, lease_s=30, limit=2)
    # The first client's first poll shares the round too (one turn each): its own, then other's.
    assert set(ids) == {new, other_new}
    assert other_likely not in ids


async def test_a_first_poll_overdue_by_the_bound_goes_before_every_re_poll(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now, account = long_ago(), await store_estimate(sessions)
    client = await insert_client(sessions)
    likely, _ = await polled_before(sessions, client, [0.9, 0.7], now)
    waited = await first_poll(
        sessions, client, due=now - timedelta(seconds=FIRST_POLL_MAX_WAIT_S + 0.01)
    )
    assert await claim_with(sessions, now, 2, account) == {waited, likely}


async def test_a_first_poll_is_ranked_by_its_own_chance(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Registered 15 s after its submit: 63% of the answers have come by then (step CDF), more
    than a re-poll's 50% and less than one's 70%."""
    now, account = long_ago(), await store_estimate(sessions)
    client = await insert_client(sessions)
    seventy, fifty, thirty = await polled_before(sessions, client, [0.7, 0.5, 0.3], now)
    old = await first_poll(sessions, client, due=now, submitted_s_before=15.0)
    assert await claim_with(sessions, now, 2, account) == {seventy, old}
    assert await claim_with(sessions, now, 1, account) == {fifty}
    assert await claim_with(sessions, now, 1, account) == {thirty}


async def test_under_a_backlog_first_polls_wait_at_most_the_bound_and_re_polls_still_move(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A client with 300 likely re-polls due for an hour and two new registrations every tick,
    three calls a tick: every first poll is claimed within FIRST_POLL_MAX_WAIT_S plus a tick of
    coming due (the backlog due earlier does not hide it), and the third call of each tick goes
    to a re-poll, likelier than a first poll that has not waited yet."""
    start, account = long_ago(), await store_estimate(sessions)
    client = await insert_client(sessions)
    backlog_ids = set(
        await polled_before(sessions, client, [0.9] * 300, start - timedelta(hours=1))
    )
    tick = timedelta(seconds=0.25)
    due_at: dict[int, datetime] = {}
    waits: list[float] = []
    re_polls = 0
    for step in range(20):
        now = start + step * tick
        for _ in range(2):
            due_at[await first_poll(sessions, client, due=now)] = now
        claimed = await claim_with(sessions, now, 3, account)
        re_polls += len(claimed & backlog_ids)
        waits += [(now - due_at[task_pk]).total_seconds() for task_pk in claimed - backlog_ids]
    # All but the last tick's registrations were polled, none later than the bound and a tick.
    assert len(waits) == len(due_at) - 2
    assert max(waits) <= FIRST_POLL_MAX_WAIT_S + tick.total_seconds()
    assert re_polls >= 19
