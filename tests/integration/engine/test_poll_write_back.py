"""A polled batch written back in one transaction (service/engine/poll_write_back.py), on the run's
PostgreSQL: each decision under the batch's lease (a task whose lease passed to someone else is
left as it is), the event and the deliveries of a final state, leased to this process and handed
to its sender once committed, the completion-time estimate added to, and the tasks that were not
polled handed back, due again no earlier than they asked."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.domain.answers import PhoneResult
from service.domain.completion import Observation
from service.domain.polling import DecisionKind, PollDecision
from service.domain.states import TaskState
from service.engine.account_estimate import AccountEstimate
from service.engine.callback_trust import CallbackTrust
from service.engine.poll_write_back import BatchReport, NotPolled, PollWriteBack
from service.store.db import transaction
from service.store.estimates import ACCOUNT_WIDE, load_estimate
from service.store.poll_results import PolledAnswer, PollWrite
from tests.support.factories import insert_client, insert_subscription, insert_tasks
from tests.support.rows import events_of, tasks_of

ACCOUNT = f"write-back-{uuid.uuid4().hex[:8]}"


class SentAtOnce:
    """The worker's sender as the write-back sees it: what it was handed, and when."""

    lease_s = 30.0

    def __init__(self) -> None:
        self.batches: list[tuple[list[int], uuid.UUID]] = []

    async def start_batch(self, ids: Sequence[int], lease_token: uuid.UUID) -> int:
        self.batches.append((list(ids), lease_token))
        return len(ids)


async def lease(
    sessions: async_sessionmaker[AsyncSession], ids: Sequence[int], token: uuid.UUID
) -> None:
    async with transaction(sessions) as session:
        await session.execute(
            text(
                "UPDATE tasks SET lease_token = :t, lease_until = now() + interval '1 minute'"
                " WHERE id = ANY(:ids)"
            ),
            {"t": token, "ids": list(ids)},
        )


def completed(id_: int, now: datetime) -> PollWrite:
    decision = PollDecision(
        DecisionKind.COMPLETE,
        TaskState.COMPLETED,
        1,
        None,
        completed_at=now,
        result=PhoneResult("52*******1234", "ring"),
        upstream_request_id="TID-done",
        observation=Observation(0.0, 4.0),
    )
    return PollWrite(id_, decision, PolledAnswer(now, "OK", 200, "TID-done", 25))


def pending(id_: int, now: datetime) -> PollWrite:
    decision = PollDecision(
        DecisionKind.RETRY,
        TaskState.PENDING,
        1,
        now + timedelta(seconds=20),
        last_pending_at=now,
    )
    return PollWrite(id_, decision, PolledAnswer(now, "PENDING", 400, "TID-wait", 25))


@pytest.fixture
def now() -> datetime:
    """The batch's time: a little ahead of the rows the test inserts (due when inserted)."""
    return utc_now() + timedelta(seconds=2)


@pytest.fixture
def sender() -> SentAtOnce:
    return SentAtOnce()


@pytest.fixture
def write_back(
    sessions: async_sessionmaker[AsyncSession], sender: SentAtOnce, now: datetime
) -> PollWriteBack:
    return PollWriteBack(
        sessions,
        AccountEstimate(ACCOUNT, half_life_s=3600.0),
        CallbackTrust(sessions, tolerance=0.05, first_poll_s=1.0),
        sender,
        clock=lambda: now,
    )


async def test_a_batch_is_written_under_its_lease_with_events_and_deliveries_sent_at_once(
    sessions: async_sessionmaker[AsyncSession],
    write_back: PollWriteBack,
    sender: SentAtOnce,
    now: datetime,
) -> None:
    client = await insert_client(sessions)
    await insert_subscription(sessions, client, ["task.completed"])
    done, waiting, later, now_again = await insert_tasks(
        sessions, client, ["wb-done", "wb-waiting", "wb-later", "wb-now"], ttl_s=3600
    )
    token = uuid.uuid4()
    await lease(sessions, [done, waiting, later, now_again], token)
    due_when_inserted = (await tasks_of(sessions, client))["wb-now"]["next_poll_at"]
    report = BatchReport(calls=2)
    not_before = now + timedelta(seconds=45)

    await write_back.write(
        token,
        [completed(done, now), pending(waiting, now)],
        [NotPolled(later, not_before=not_before), NotPolled(now_again)],
        report,
    )

    rows: dict[str, dict[str, Any]] = await tasks_of(sessions, client)
    assert rows["wb-done"]["state"] == "completed"
    assert rows["wb-done"]["result"] == {"phone_number": "52*******1234", "phone_status": "ring"}
    assert rows["wb-waiting"]["state"] == "pending"
    assert rows["wb-waiting"]["next_poll_at"] == now + timedelta(seconds=20)
    # Handed back: due again at `not_before`, or without one at the batch's time at the earliest.
    assert rows["wb-later"]["next_poll_at"] == not_before
    assert rows["wb-now"]["next_poll_at"] == max(due_when_inserted, now)
    assert rows["wb-later"]["poll_count"] == rows["wb-now"]["poll_count"] == 0
    assert all(row["lease_token"] is None for row in rows.values())
    [event] = await events_of(sessions, client)
    assert (event["type"], event["task_pk"]) == ("task.completed", done)
    # The completed task's one delivery, leased to this batch's token and handed to the sender.
    [(sent, sent_token)] = sender.batches
    assert sent_token == token
    async with sessions() as session:
        leased = (
            await session.execute(
                text("SELECT id, lease_token FROM deliveries WHERE event_id = :e"),
                {"e": event["id"]},
            )
        ).all()
    assert [(row.id, row.lease_token) for row in leased] == [(sent[0], token)]
    assert (report.calls, report.written, report.released) == (2, 2, 2)
    assert report.decisions == {"complete": 1, "retry": 1}


async def test_a_completion_adds_to_the_estimate_of_the_account_and_of_its_client(
    sessions: async_sessionmaker[AsyncSession], write_back: PollWriteBack, now: datetime
) -> None:
    client = await insert_client(sessions)
    [done] = await insert_tasks(sessions, client, ["wb-estimate"], ttl_s=3600)
    token = uuid.uuid4()
    await lease(sessions, [done], token)

    await write_back.write(token, [completed(done, now)], [], BatchReport())

    async with transaction(sessions) as session:
        account = await load_estimate(session, ACCOUNT, ACCOUNT_WIDE)
        own = await load_estimate(session, ACCOUNT, client)
    assert account is not None
    assert own is not None
    assert sum(own.weights) == pytest.approx(1.0)
    assert sum(account.weights) >= 1.0 - 1e-9


async def test_a_task_whose_lease_passed_to_someone_else_is_left_as_it_is(
    sessions: async_sessionmaker[AsyncSession],
    write_back: PollWriteBack,
    sender: SentAtOnce,
    now: datetime,
) -> None:
    client = await insert_client(sessions)
    [ours, theirs, handed] = await insert_tasks(
        sessions, client, ["wb-ours", "wb-theirs", "wb-handed"], ttl_s=3600
    )
    token, other = uuid.uuid4(), uuid.uuid4()
    await lease(sessions, [ours], token)
    await lease(sessions, [theirs, handed], other)
    report = BatchReport()

    await write_back.write(
        token, [pending(ours, now), completed(theirs, now)], [NotPolled(handed)], report
    )

    rows = await tasks_of(sessions, client)
    assert rows["wb-ours"]["poll_count"] == 1
    assert rows["wb-theirs"]["state"] == "pending"
    assert rows["wb-theirs"]["poll_count"] == 0
    assert rows["wb-theirs"]["lease_token"] == other
    assert rows["wb-handed"]["lease_token"] == other
    assert await events_of(sessions, client) == []
    assert sender.batches == []
    assert (report.written, report.released) == (1, 0)
    # The decisions made count, whether or not their rows could still be written.
    assert report.decisions == {"retry": 1, "complete": 1}
