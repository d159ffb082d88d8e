"""A poll's write-back (service/store/poll_results.py) against the real database: each decision
written under the lease with the events and deliveries of the final states, a late, duplicated or
cancelled write changing nothing, the new deliveries leased to the worker or left to the
scheduler."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.domain.answers import Outcome, OutcomeKind, PhoneResult
from service.domain.backoff import BackoffPolicy
from service.domain.polling import PollPolicy, TaskSnapshot, decide_after_poll
from service.store.db import transaction
from service.store.deliveries import claim_due_deliveries
from service.store.leased_tasks import load_leased_tasks
from service.store.poll_results import (
    PolledAnswer,
    PollWrite,
    record_poll_results,
    record_poll_results_leasing_deliveries,
)
from tests.support.claims import claim_all
from tests.support.factories import insert_client, insert_subscription, insert_tasks
from tests.support.rows import events_of, task_json_in_store, tasks_of

POLICY = PollPolicy(BackoffPolicy(2.0, 300.0))
COMPLETED = Outcome(
    OutcomeKind.COMPLETED, "OK", "ok", request_id="TID9", result=PhoneResult("0062**", "busy")
)
PENDING = Outcome(OutcomeKind.PENDING, "PENDING", "check in progress", request_id="TID8")
REJECTED = Outcome(OutcomeKind.REJECTED, "INVALID_ARGUMENT", "argument 'task_id': not found")


async def write(
    sessions: async_sessionmaker[AsyncSession],
    token: uuid.UUID,
    task_pk: int,
    outcome: Outcome,
    now: datetime,
    poll_count: int = 0,
) -> int:
    decision = decide_after_poll(
        TaskSnapshot(poll_count, now + timedelta(hours=1)), outcome, now, POLICY, 0.5
    )
    async with transaction(sessions) as session:
        written = await record_poll_results(session, token, [PollWrite(task_pk, decision)], now)
    return len(written)


async def test_completion_is_written_with_its_event_and_deliveries(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client = await insert_client(sessions)
    wants_completed = await insert_subscription(sessions, client, ["task.completed"])
    await insert_subscription(sessions, client, ["task.failed"])
    await insert_subscription(sessions, client, ["task.completed"], enabled=False)
    await insert_subscription(sessions, client, ["task.completed"], deleted=True)
    now = utc_now()
    [task] = await insert_tasks(sessions, client, ["done"], now=now)
    token, _ = await claim_all(sessions, now)
    assert await write(sessions, token, task, COMPLETED, now) == 1

    row = (await tasks_of(sessions, client))["done"]
    assert row["state"] == "completed"
    assert row["result"] == {"phone_number": "0062**", "phone_status": "busy"}
    assert row["poll_count"] == 1
    assert row["upstream_request_id"] == "TID9"
    assert row["completed_at"] == now
    assert row["next_poll_at"] is None
    assert row["lease_token"] is None
    [event] = await events_of(sessions, client)
    assert event["type"] == "task.completed"
    assert event["public_id"].startswith("evt_")
    assert event["data"]["state"] == "completed"
    assert event["data"]["task_id"] == "done"
    assert event["data"]["result"]["phone_status"] == "busy"
    async with sessions() as session:
        deliveries = (
            await session.execute(
                text("SELECT * FROM deliveries WHERE event_id = :e"), {"e": event["id"]}
            )
        ).all()
    assert [d.subscription_id for d in deliveries] == [wants_completed]
    assert deliveries[0].state == "pending"
    assert deliveries[0].public_id.startswith("dlv_")
    assert deliveries[0].next_attempt_at == now


async def test_rejection_fails_the_task_with_its_reason(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client = await insert_client(sessions)
    now = utc_now()
    [task] = await insert_tasks(sessions, client, ["bad"], now=now)
    token, _ = await claim_all(sessions, now)
    await write(sessions, token, task, REJECTED, now)
    row = (await tasks_of(sessions, client))["bad"]
    assert row["state"] == "failed"
    assert row["last_error"]["code"] == "INVALID_ARGUMENT"
    assert row["last_error"]["message"] == "argument 'task_id': not found"
    assert [e["type"] for e in await events_of(sessions, client)] == ["task.failed"]


async def test_pending_answer_reschedules_and_keeps_the_last_error(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client = await insert_client(sessions)
    now = utc_now()
    [task] = await insert_tasks(sessions, client, ["slow"], now=now)
    async with transaction(sessions) as session:
        await session.execute(
            text('UPDATE tasks SET last_error = \'{"code": "TIMEOUT"}\' WHERE id = :id'),
            {"id": task},
        )
    token, _ = await claim_all(sessions, now)
    await write(sessions, token, task, PENDING, now)
    row = (await tasks_of(sessions, client))["slow"]
    assert row["state"] == "pending"
    assert row["next_poll_at"] == now + timedelta(seconds=2)
    assert row["poll_count"] == 1
    assert row["upstream_request_id"] == "TID8"
    assert row["last_error"] == {"code": "TIMEOUT"}
    assert row["lease_token"] is None
    assert await events_of(sessions, client) == []


@pytest.mark.parametrize(
    ("hint_after_call_s", "due_in_s"),
    [(-1.0, 2.0), (0.5, 0.0), (2.0, 1.0)],
    ids=["hint_before_the_call", "hint_during_the_call", "hint_deferred_to_after_the_answer"],
)
async def test_a_hint_that_came_while_the_call_was_in_flight_keeps_the_task_due(
    sessions: async_sessionmaker[AsyncSession], hint_after_call_s: float, due_in_s: float
) -> None:
    """A PENDING answer reschedules the task, but a callback that arrived after the call was
    sent may announce an answer the call was too early to see: the task stays due at the hint
    (or when the hint's interval ends). A hint the call already answered is spent."""
    client = await insert_client(sessions)
    now = utc_now()
    [task] = await insert_tasks(sessions, client, ["hinted-in-flight"], now=now)
    token, _ = await claim_all(sessions, now)
    called_at = now - timedelta(seconds=1)
    async with transaction(sessions) as session:
        await session.execute(
            text("UPDATE tasks SET last_hint_at = :at WHERE id = :id"),
            {"at": called_at + timedelta(seconds=hint_after_call_s), "id": task},
        )
    decision = decide_after_poll(
        TaskSnapshot(0, now + timedelta(hours=1)), PENDING, now, POLICY, 0.5
    )
    polled = PolledAnswer(now, "PENDING", 200, "TID8", latency_ms=1000)
    async with transaction(sessions) as session:
        await record_poll_results(session, token, [PollWrite(task, decision, polled)], now)

    row = (await tasks_of(sessions, client))["hinted-in-flight"]
    assert row["next_poll_at"] == now + timedelta(seconds=due_in_s)


async def test_late_message_with_an_old_lease_changes_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client = await insert_client(sessions)
    now = utc_now()
    [task] = await insert_tasks(sessions, client, ["raced"], now=now, ttl_s=3600)
    old_token, _ = await claim_all(sessions, now)
    new_token, _ = await claim_all(sessions, now + timedelta(seconds=31))
    assert await write(sessions, old_token, task, COMPLETED, now) == 0
    async with transaction(sessions) as session:
        assert await load_leased_tasks(session, [task], old_token, now) == []
        assert [t.id for t in await load_leased_tasks(session, [task], new_token, now)] == [task]
    row = (await tasks_of(sessions, client))["raced"]
    assert row["state"] == "pending"
    assert row["lease_token"] == new_token


async def test_duplicate_message_writes_once(sessions: async_sessionmaker[AsyncSession]) -> None:
    client = await insert_client(sessions)
    now = utc_now()
    [task] = await insert_tasks(sessions, client, ["twice"], now=now)
    token, _ = await claim_all(sessions, now)
    assert await write(sessions, token, task, COMPLETED, now) == 1
    assert await write(sessions, token, task, COMPLETED, now) == 0
    assert len(await events_of(sessions, client)) == 1


async def test_cancel_wins_over_a_late_answer(sessions: async_sessionmaker[AsyncSession]) -> None:
    client = await insert_client(sessions)
    now = utc_now()
    [task] = await insert_tasks(sessions, client, ["cancel-me"], now=now)
    token, _ = await claim_all(sessions, now)
    async with transaction(sessions) as session:
        await session.execute(
            text("UPDATE tasks SET state = 'cancelled', completed_at = :now WHERE id = :id"),
            {"id": task, "now": now},
        )
    assert await write(sessions, token, task, COMPLETED, now) == 0
    row = (await tasks_of(sessions, client))["cancel-me"]
    assert row["state"] == "cancelled"
    assert row["result"] is None
    assert await events_of(sessions, client) == []


async def test_outbox_never_writes_a_second_event_for_a_state(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client = await insert_client(sessions)
    now = utc_now()
    [task] = await insert_tasks(sessions, client, ["once"], now=now)
    token, _ = await claim_all(sessions, now)
    await write(sessions, token, task, COMPLETED, now)
    # Force the row back to pending (as if a bug re-opened it) and complete it again.
    async with transaction(sessions) as session:
        await session.execute(
            text("UPDATE tasks SET state = 'pending', lease_token = :t WHERE id = :id"),
            {"id": task, "t": token},
        )
    await write(sessions, token, task, COMPLETED, now)
    assert len(await events_of(sessions, client)) == 1


async def test_event_data_is_the_task_json_of_the_row_as_written(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client = await insert_client(sessions)
    now = utc_now()
    [task] = await insert_tasks(sessions, client, ["shown"], now=now)
    async with transaction(sessions) as session:
        await session.execute(
            text(
                "UPDATE tasks SET metadata = CAST(:m AS jsonb), last_error = CAST(:e AS jsonb)"
                " WHERE id = :id"
            ),
            {
                "id": task,
                "m": '{"order": "A-17", "nested": {"n": [1, 2.5, null, "é"]}}',
                "e": '{"code": "TIMEOUT", "message": "no answer", "at": "2026-01-02T03:04:05Z"}',
            },
        )
    token, _ = await claim_all(sessions, now)
    await write(sessions, token, task, COMPLETED, now, poll_count=2)
    [event] = await events_of(sessions, client)
    assert event["data"] == await task_json_in_store(sessions, task)
    assert event["data"]["metadata"]["nested"] == {"n": [1, 2.5, None, "é"]}
    assert event["data"]["last_error"]["code"] == "TIMEOUT", "an old error stays on record"


async def test_a_batch_writes_every_decision_and_only_the_final_states_get_events(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client = await insert_client(sessions)
    await insert_subscription(sessions, client, ["task.completed", "task.failed"])
    now = utc_now()
    done, waiting, bad, cancelled = await insert_tasks(
        sessions, client, ["b-done", "b-waiting", "b-bad", "b-cancelled"], now=now
    )
    token, _ = await claim_all(sessions, now)
    async with transaction(sessions) as session:
        await session.execute(
            text("UPDATE tasks SET state = 'cancelled' WHERE id = :id"), {"id": cancelled}
        )

    def decided(task_pk: int, outcome: Outcome) -> PollWrite:
        snapshot = TaskSnapshot(0, now + timedelta(hours=1))
        return PollWrite(task_pk, decide_after_poll(snapshot, outcome, now, POLICY, 0.5))

    writes = [
        decided(bad, REJECTED),
        decided(done, COMPLETED),
        decided(cancelled, COMPLETED),
        decided(waiting, PENDING),
    ]
    async with transaction(sessions) as session:
        written = await record_poll_results(session, token, writes, now)
    assert sorted((w.task_id, w.state) for w in written) == [
        ("b-bad", "failed"),
        ("b-done", "completed"),
        ("b-waiting", "pending"),
    ]
    rows = await tasks_of(sessions, client)
    assert rows["b-waiting"]["next_poll_at"] == now + timedelta(seconds=2)
    assert rows["b-cancelled"]["state"] == "cancelled"
    events = await events_of(sessions, client)
    assert sorted((e["data"]["task_id"], e["type"]) for e in events) == [
        ("b-bad", "task.failed"),
        ("b-done", "task.completed"),
    ]
    async with sessions() as session:
        deliveries = (
            await session.execute(
                text("SELECT count(*) FROM deliveries WHERE client_id = :c"), {"c": client}
            )
        ).scalar_one()
    assert deliveries == 2


async def test_a_write_back_can_lease_the_new_deliveries_to_the_worker_that_sends_them(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client = await insert_client(sessions)
    await insert_subscription(sessions, client, ["task.completed"])
    now = utc_now()
    [task_pk] = await insert_tasks(sessions, client, ["leased-deliveries"], now=now)
    token, _ = await claim_all(sessions, now)
    decision = decide_after_poll(
        TaskSnapshot(0, now + timedelta(hours=1)), COMPLETED, now, POLICY, 0.5
    )
    until = now + timedelta(seconds=10)
    async with transaction(sessions) as session:
        written, delivery_ids = await record_poll_results_leasing_deliveries(
            session, token, [PollWrite(task_pk, decision)], now, until
        )
    assert [task.id for task in written] == [task_pk]
    [delivery_id] = delivery_ids
    async with sessions() as session:
        row = (
            await session.execute(
                text("SELECT state, lease_token, lease_until FROM deliveries WHERE id = :i"),
                {"i": delivery_id},
            )
        ).one()
    assert (row.state, row.lease_token, row.lease_until) == ("pending", token, until)
    # Nobody else claims it while the lease holds; once it ends (the worker died), anyone does.
    async with transaction(sessions) as session:
        _, claimed_now = await claim_due_deliveries(session, now, lease_s=30, limit=10_000)
    assert delivery_id not in claimed_now
    async with transaction(sessions) as session:
        _, claimed_later = await claim_due_deliveries(
            session, until + timedelta(seconds=1), lease_s=30, limit=10_000
        )
    assert delivery_id in claimed_later


async def test_a_write_back_without_a_lease_leaves_the_deliveries_to_the_scheduler(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client = await insert_client(sessions)
    await insert_subscription(sessions, client, ["task.completed"])
    now = utc_now()
    [task_pk] = await insert_tasks(sessions, client, ["unleased-deliveries"], now=now)
    token, _ = await claim_all(sessions, now)
    decision = decide_after_poll(
        TaskSnapshot(0, now + timedelta(hours=1)), COMPLETED, now, POLICY, 0.5
    )
    async with transaction(sessions) as session:
        _, delivery_ids = await record_poll_results_leasing_deliveries(
            session, token, [PollWrite(task_pk, decision)], now, None
        )
    [delivery_id] = delivery_ids
    async with transaction(sessions) as session:
        _, claimed = await claim_due_deliveries(session, now, lease_s=30, limit=10_000)
    assert delivery_id in claimed
