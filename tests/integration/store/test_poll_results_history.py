"""Each task keeps its last POLL_HISTORY_LIMIT upstream answers, written by the write-back."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.domain.answers import Outcome, OutcomeKind
from service.domain.backoff import BackoffPolicy
from service.domain.polling import PollPolicy, TaskSnapshot, decide_after_poll
from service.store.db import transaction
from service.store.history import POLL_HISTORY_LIMIT
from service.store.poll_claims import claim_due_tasks
from service.store.poll_results import PolledAnswer, PollWrite, record_poll_results
from tests.support.factories import insert_client, insert_tasks
from tests.support.rows import tasks_of

PENDING = Outcome(OutcomeKind.PENDING, "PENDING", "check in progress", request_id="TID1")
POLICY = PollPolicy(BackoffPolicy(0.5, 0.5))


async def test_the_history_keeps_the_newest_answers_and_stays_bounded(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client = await insert_client(sessions)
    start = utc_now()
    [task_pk] = await insert_tasks(sessions, client, ["history"], now=start, ttl_s=3600)
    polls = POLL_HISTORY_LIMIT + 5
    for n in range(polls):
        now = start + timedelta(seconds=n + 1)
        async with transaction(sessions) as session:
            token, ids = await claim_due_tasks(session, now, lease_s=30, limit=10_000)
        assert task_pk in ids
        decision = decide_after_poll(
            TaskSnapshot(n, start + timedelta(hours=1)), PENDING, now, POLICY, 0.5
        )
        answer = PolledAnswer(now, "PENDING", 400, f"TID{n}", 12)
        async with transaction(sessions) as session:
            await record_poll_results(session, token, [PollWrite(task_pk, decision, answer)], now)

    row = (await tasks_of(sessions, client))["history"]
    assert row["poll_count"] == polls
    history = row["poll_history"]
    assert len(history) == POLL_HISTORY_LIMIT
    assert [entry["request_id"] for entry in history] == [f"TID{n}" for n in range(5, polls)]
    assert history[-1] == {
        "at": (start + timedelta(seconds=polls)).isoformat(),
        "code": "PENDING",
        "status": 400,
        "request_id": f"TID{polls - 1}",
        "latency_ms": 12,
    }


async def test_a_write_without_a_call_adds_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client = await insert_client(sessions)
    now = utc_now()
    [task_pk] = await insert_tasks(sessions, client, ["no-call"], now=now)
    async with transaction(sessions) as session:
        token, _ = await claim_due_tasks(session, now, lease_s=30, limit=10_000)
    decision = decide_after_poll(TaskSnapshot(0, now + timedelta(hours=1)), PENDING, now, POLICY, 0)
    async with transaction(sessions) as session:
        await record_poll_results(session, token, [PollWrite(task_pk, decision)], now)
    assert (await tasks_of(sessions, client))["no-call"]["poll_history"] == []
