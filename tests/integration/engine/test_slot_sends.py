"""One batch of scheduled submits sent at its rate slots (service/engine/slot_sends.py), with a
purpose of the test's own on the real ledger and Redis: the marked are sent in the batch's order
after the skipped; while upstream is paused nothing is marked and all go back; without a slot the
marked go back unsent and their counted checks are given back; past the budget a submit waits for
the next UTC day; a send that raises counts as FAILED with the purpose's log line, its submit left
`submitting`; one whose call missed its slot at the wire and got no new one goes back unsent;
the marked are prepared before any is sent."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.domain.budgets import next_utc_midnight, utc_day
from service.engine.slot_sends import (
    FAILED,
    HANDED_BACK,
    MARKED_AT_ONCE,
    SKIPPED,
    MarkedCap,
    SlotSender,
    SlotSteps,
)
from service.store.budgets import checks_on
from service.store.db import transaction
from service.upstream.call_slot import SlotMissed
from service.upstream.gate import UpstreamGate
from service.upstream.pause import close_pause, open_pause
from service.upstream.ratelimit import SlotReservation, UpstreamRateLimiter
from service.upstream.reaction import UpstreamReaction
from tests.support.factories import insert_client

pytestmark = pytest.mark.usefixtures("flush_redis")

RATE = 50.0
RETRY_S = 0.2
SENT = "sent"
TOKEN = uuid.uuid4()
log = logging.getLogger("tests.slot_sends")


@dataclass(frozen=True)
class Submit:
    id: int
    client_id: int


@dataclass
class Purpose:
    """What the runner asked of its purpose, in turn."""

    lost: set[int] = field(default_factory=set)  # no longer ours at the mark
    broken: set[int] = field(default_factory=set)  # their send raises
    late: set[int] = field(default_factory=set)  # their send misses its slot at the wire
    marked_ids: list[int] = field(default_factory=list)
    # The group the purpose saw before any of it was marked (SlotSteps.before_marks).
    before_marks: list[int] = field(default_factory=list)
    marked_before_it: list[int] | None = None
    # What SlotSteps.prepare was given, and what had been sent by then, group by group.
    prepared: list[tuple[list[int], list[int]]] = field(default_factory=list)
    released: list[tuple[int, uuid.UUID, datetime]] = field(default_factory=list)
    sent: list[tuple[int, uuid.UUID, datetime, date | None]] = field(default_factory=list)
    cap: MarkedCap | None = None  # the runner's, whose share taken each mark records
    held_at_marks: list[int] = field(default_factory=list)

    async def mark(
        self,
        session: AsyncSession,
        submit: Submit,
        token: uuid.UUID,
        now: datetime,
        lease_until: datetime,
    ) -> bool:
        self.marked_ids.append(submit.id)
        if self.cap is not None:
            self.held_at_marks.append(self.cap.held)
        return submit.id not in self.lost

    async def first(self, session: AsyncSession, submits: list[Submit], now: datetime) -> None:
        self.before_marks = [submit.id for submit in submits]
        self.marked_before_it = list(self.marked_ids)

    async def prepare(self, submits: list[Submit]) -> None:
        self.prepared.append(([submit.id for submit in submits], [s[0] for s in self.sent]))

    async def release(
        self,
        session: AsyncSession,
        submit: Submit,
        token: uuid.UUID,
        now: datetime,
        due_at: datetime,
    ) -> None:
        self.released.append((submit.id, token, due_at))

    async def send(
        self, submit: Submit, token: uuid.UUID, lease_until: datetime, counted_on: date | None
    ) -> str:
        if submit.id in self.broken:
            raise RuntimeError("a bug")
        if submit.id in self.late:
            raise SlotMissed
        self.sent.append((submit.id, token, lease_until, counted_on))
        return SENT


class NoSlots(UpstreamRateLimiter):
    async def reserve_calls(self, count: int) -> SlotReservation:
        raise ConnectionError("redis away")


class FirstReservationOnly(UpstreamRateLimiter):
    """Redis answers the first reservation, then is away."""

    reserved = 0

    async def reserve_calls(self, count: int) -> SlotReservation:
        self.reserved += 1
        if self.reserved > 1:
            raise ConnectionError("redis away")
        return await super().reserve_calls(count)


def sender_of(
    purpose: Purpose,
    sessions: async_sessionmaker[AsyncSession],
    redis: Redis[Any],
    limiter: UpstreamRateLimiter | None = None,
    cap: MarkedCap | None = None,
    marked_at_once: int = MARKED_AT_ONCE,
) -> SlotSender[Submit]:
    limiter = limiter or UpstreamRateLimiter(redis, RATE)
    reaction = UpstreamReaction(redis, limiter, UpstreamGate(redis, limiter), pause_probe_s=0.5)
    steps = SlotSteps(
        mark=purpose.mark,
        release=purpose.release,
        send=purpose.send,
        log=log,
        error_event="test_purpose.error",
        error_fields=lambda submit: {"submit_no": submit.id},
        before_marks=purpose.first,
        prepare=purpose.prepare,
    )
    return SlotSender(
        sessions,
        reaction,
        steps,
        retry_s=RETRY_S,
        default_limit=0,
        clock=utc_now,
        marked_at_once=marked_at_once,
        cap=cap,
    )


async def limited_client(sessions: async_sessionmaker[AsyncSession], limit: int) -> int:
    client_id = await insert_client(sessions)
    async with transaction(sessions) as session:
        await session.execute(
            text("UPDATE clients SET max_checks_per_day = :limit WHERE id = :id"),
            {"limit": limit, "id": client_id},
        )
    return client_id


async def test_the_marked_are_sent_in_order_after_the_skipped(
    sessions: async_sessionmaker[AsyncSession], redis_client: Redis[Any]
) -> None:
    client_id = await insert_client(sessions)
    purpose = Purpose(lost={2})
    now = utc_now()
    lease_until = now + timedelta(seconds=10)
    batch = [Submit(n, client_id) for n in (1, 2, 3, 4)]

    outcomes = await sender_of(purpose, sessions, redis_client).send_batch(
        batch, TOKEN, now, lease_until
    )

    assert outcomes == [SKIPPED, SENT, SENT, SENT]
    assert purpose.marked_ids == [1, 2, 3, 4]
    # The purpose's own first step saw the whole group in the marks' transaction, before any mark.
    assert (purpose.before_marks, purpose.marked_before_it) == ([1, 2, 3, 4], [])
    # The marked (only) were prepared before the first call: at its slot a call only sends.
    assert purpose.prepared == [([1, 3, 4], [])]
    # No budget: nothing counted, the batch's token and lease passed on.
    assert purpose.sent == [(n, TOKEN, lease_until, None) for n in (1, 3, 4)]
    assert purpose.released == []


async def test_while_upstream_is_paused_nothing_is_marked_and_all_go_back(
    sessions: async_sessionmaker[AsyncSession], redis_client: Redis[Any]
) -> None:
    client_id = await insert_client(sessions)
    purpose = Purpose()
    now = utc_now()
    await open_pause(redis_client, "KEY_EXPIRED", datetime.now(UTC))
    try:
        outcomes = await sender_of(purpose, sessions, redis_client).send_batch(
            [Submit(1, client_id), Submit(2, client_id)], TOKEN, now, now + timedelta(seconds=10)
        )
    finally:
        await close_pause(redis_client)

    assert outcomes == [HANDED_BACK, HANDED_BACK]
    assert (purpose.marked_ids, purpose.sent) == ([], [])
    later = now + timedelta(seconds=RETRY_S)
    assert purpose.released == [(1, TOKEN, later), (2, TOKEN, later)]


async def test_without_a_slot_the_marked_go_back_unsent_and_their_checks_are_given_back(
    sessions: async_sessionmaker[AsyncSession], redis_client: Redis[Any]
) -> None:
    client_id = await limited_client(sessions, 5)
    purpose = Purpose()
    now = utc_now()
    sender = sender_of(purpose, sessions, redis_client, NoSlots(redis_client, RATE))

    outcomes = await sender.send_batch(
        [Submit(n, client_id) for n in (1, 2, 3)], TOKEN, now, now + timedelta(seconds=10)
    )

    assert outcomes == [HANDED_BACK] * 3
    assert purpose.marked_ids == [1, 2, 3]  # counted and marked
    assert purpose.sent == []
    assert [(n, token) for n, token, _ in purpose.released] == [(1, TOKEN), (2, TOKEN), (3, TOKEN)]
    # Due at once (the hand-back's own clock), not held back.
    assert all(now <= due_at <= utc_now() for _, _, due_at in purpose.released)
    async with transaction(sessions) as session:
        assert await checks_on(session, client_id, utc_day(now)) == 0


async def test_past_the_budget_a_submit_waits_for_the_next_utc_day(
    sessions: async_sessionmaker[AsyncSession], redis_client: Redis[Any]
) -> None:
    client_id = await limited_client(sessions, 1)
    purpose = Purpose()
    now = utc_now()

    outcomes = await sender_of(purpose, sessions, redis_client).send_batch(
        [Submit(1, client_id), Submit(2, client_id)], TOKEN, now, now + timedelta(seconds=10)
    )

    assert outcomes == [HANDED_BACK, SENT]
    assert [(n, counted_on) for n, _, _, counted_on in purpose.sent] == [(1, utc_day(now))]
    assert purpose.released == [(2, TOKEN, next_utc_midnight(now))]
    async with transaction(sessions) as session:
        assert await checks_on(session, client_id, utc_day(now)) == 1


async def test_a_send_that_raises_is_failed_with_the_purposes_log_line_and_not_handed_back(
    sessions: async_sessionmaker[AsyncSession],
    redis_client: Redis[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    client_id = await limited_client(sessions, 5)
    purpose = Purpose(broken={2})
    now = utc_now()
    caplog.set_level(logging.ERROR, logger=log.name)

    outcomes = await sender_of(purpose, sessions, redis_client).send_batch(
        [Submit(n, client_id) for n in (1, 2, 3)], TOKEN, now, now + timedelta(seconds=10)
    )

    assert outcomes == [SENT, FAILED, SENT]
    # Its submit stays `submitting` (its lease decides), its check still counted.
    assert purpose.released == []
    async with transaction(sessions) as session:
        assert await checks_on(session, client_id, utc_day(now)) == 3
    [record] = [r for r in caplog.records if r.name == log.name]
    assert record.getMessage() == "test_purpose.error"
    assert (record.__dict__["submit_no"], record.__dict__["error_type"]) == (2, "RuntimeError")
    assert record.exc_info is not None


async def test_a_call_late_at_the_wire_without_a_new_slot_goes_back_and_its_check_is_given_back(
    sessions: async_sessionmaker[AsyncSession], redis_client: Redis[Any]
) -> None:
    client_id = await limited_client(sessions, 5)
    purpose = Purpose(late={2})
    now = utc_now()
    sender = sender_of(purpose, sessions, redis_client, FirstReservationOnly(redis_client, RATE))

    outcomes = await sender.send_batch(
        [Submit(n, client_id) for n in (1, 2, 3)], TOKEN, now, now + timedelta(seconds=10)
    )

    # Nothing of it was sent: handed back like a submit that never had a slot, not FAILED.
    assert outcomes == [SENT, HANDED_BACK, SENT]
    assert [n for n, *_ in purpose.sent] == [1, 3]
    assert [(n, token) for n, token, _ in purpose.released] == [(2, TOKEN)]
    async with transaction(sessions) as session:
        assert await checks_on(session, client_id, utc_day(now)) == 2


async def test_the_cap_is_taken_a_group_at_a_time_and_given_back_whatever_became_of_each(
    sessions: async_sessionmaker[AsyncSession], redis_client: Redis[Any]
) -> None:
    """Skipped, past the budget, sent, failed or without a slot: every submit's share of the
    process's cap is free again once the batch is done, and the cap bounds each group."""
    client_id = await limited_client(sessions, 4)
    cap = MarkedCap(2)
    purpose = Purpose(lost={2}, broken={3}, cap=cap)
    now = utc_now()
    sender = sender_of(purpose, sessions, redis_client, cap=cap, marked_at_once=2)
    outcomes = await sender.send_batch(
        [Submit(n, client_id) for n in range(1, 8)], TOKEN, now, now + timedelta(seconds=10)
    )
    # Groups of two (the last of one); the fifth counted check is past the budget of 4.
    # Group by group: [1, 2] (2 no longer ours), [3, 4] (3 raises), [5, 6], [7]: the budget of
    # 4 counts 1, 3, 4 and 5, so 6 and 7 wait for the next day, unmarked.
    assert outcomes == [SKIPPED, SENT, FAILED, SENT, HANDED_BACK, SENT, HANDED_BACK]
    assert purpose.marked_ids == [1, 2, 3, 4, 5]
    # Each mark ran with its group's share taken and no more (the cap of 2 is one group).
    assert purpose.held_at_marks == [2, 2, 2, 2, 2]
    assert cap.held == 0

    no_slots = sender_of(purpose, sessions, redis_client, NoSlots(redis_client, RATE), cap=cap)
    outcomes = await no_slots.send_batch(
        [Submit(n, client_id) for n in (8, 9, 10)], TOKEN, now, now + timedelta(seconds=10)
    )
    assert outcomes == [HANDED_BACK] * 3
    assert cap.held == 0
