"""Retention: finished tasks older than PHONEBRIDGE_RETENTION_DAYS are purged with their events,
deliveries and attempts, in batches, by one scheduler at a time; everything else stays.

The clock is a parameter: `now` is fixed per test and the tasks' completion times are placed
around its cutoff.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.engine.retention import RetentionPurge
from service.store.db import take_turn, transaction
from service.store.retention import RETENTION_LOCK_ID
from tests.support.factories import insert_client

RETENTION_DAYS = 30.0
NOW = datetime.now(UTC).replace(microsecond=0)
CUTOFF = NOW - timedelta(days=RETENTION_DAYS)


async def add_task(
    sessions: async_sessionmaker[AsyncSession],
    client_id: int,
    state: str,
    completed_at: datetime | None,
    *,
    delivery_state: str | None = None,
) -> str:
    """A task in `state`; with `delivery_state`, also its event, a subscription's delivery in
    that state and one attempt."""
    task_id = f"T-{secrets.token_hex(6)}"
    submitted = (completed_at or NOW) - timedelta(hours=1)
    async with transaction(sessions) as session:
        task_pk = (
            await session.execute(
                text(
                    """
                    INSERT INTO tasks (client_id, task_id, state, submitted_at, registered_at,
                                       expires_at, completed_at, next_poll_at)
                    VALUES (:c, :t, CAST(:s AS text), :sub, :sub, :sub + interval '1 day', :done,
                            CASE WHEN CAST(:s AS text) = 'pending' THEN :sub END)
                    RETURNING id
                    """
                ),
                {"c": client_id, "t": task_id, "s": state, "sub": submitted, "done": completed_at},
            )
        ).scalar_one()
        if delivery_state is not None:
            await _add_event_with_delivery(session, client_id, task_pk, delivery_state)
    return task_id


async def _add_event_with_delivery(
    session: AsyncSession, client_id: int, task_pk: int, delivery_state: str
) -> None:
    event_pk = (
        await session.execute(
            text(
                """
                INSERT INTO events (public_id, client_id, task_pk, type, data)
                VALUES (:p, :c, :t, 'task.completed', '{}') RETURNING id
                """
            ),
            {"p": f"evt_{secrets.token_hex(12)}", "c": client_id, "t": task_pk},
        )
    ).scalar_one()
    subscription_pk = (
        await session.execute(
            text(
                """
                INSERT INTO subscriptions (public_id, client_id, url, event_types,
                                           secret_encrypted)
                VALUES (:p, :c, 'https://example.com/hook', ARRAY['task.completed'], '\\x00')
                RETURNING id
                """
            ),
            {"p": f"sub_{secrets.token_hex(12)}", "c": client_id},
        )
    ).scalar_one()
    delivery_pk = (
        await session.execute(
            text(
                """
                INSERT INTO deliveries (public_id, event_id, subscription_id, client_id, state,
                                        next_attempt_at)
                VALUES (:p, :e, :s, :c, CAST(:state AS text),
                        CASE WHEN CAST(:state AS text) = 'pending' THEN now() END)
                RETURNING id
                """
            ),
            {
                "p": f"dlv_{secrets.token_hex(12)}",
                "e": event_pk,
                "s": subscription_pk,
                "c": client_id,
                "state": delivery_state,
            },
        )
    ).scalar_one()
    await session.execute(
        text(
            "INSERT INTO delivery_attempts (delivery_id, at, response_status) VALUES (:d, :a, 500)"
        ),
        {"d": delivery_pk, "a": NOW - timedelta(days=40)},
    )


async def remaining(sessions: async_sessionmaker[AsyncSession], client_id: int) -> dict[str, int]:
    """How many of this client's tasks, events, deliveries and attempts exist."""
    async with sessions() as session:
        row = (
            await session.execute(
                text(
                    """
                    SELECT
                      (SELECT count(*) FROM tasks WHERE client_id = :c) AS tasks,
                      (SELECT count(*) FROM events WHERE client_id = :c) AS events,
                      (SELECT count(*) FROM deliveries WHERE client_id = :c) AS deliveries,
                      (SELECT count(*) FROM delivery_attempts a
                         JOIN deliveries d ON d.id = a.delivery_id
                        WHERE d.client_id = :c) AS attempts
                    """
                ),
                {"c": client_id},
            )
        ).one()
        return dict(row._mapping)


async def task_ids(sessions: async_sessionmaker[AsyncSession], client_id: int) -> set[str]:
    async with sessions() as session:
        result = await session.execute(
            text("SELECT task_id FROM tasks WHERE client_id = :c"), {"c": client_id}
        )
        return {str(row[0]) for row in result}


def purge(
    sessions: async_sessionmaker[AsyncSession], *, batch: int = 500, max_batches: int = 100
) -> RetentionPurge:
    return RetentionPurge(sessions, RETENTION_DAYS, batch=batch, max_batches=max_batches)


async def add_old_finished(
    sessions: async_sessionmaker[AsyncSession], client_id: int, count: int
) -> Sequence[str]:
    return [
        await add_task(sessions, client_id, "completed", CUTOFF - timedelta(minutes=i + 1))
        for i in range(count)
    ]


async def test_finished_tasks_past_retention_go_with_their_events_deliveries_and_attempts(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client_id = await insert_client(sessions)
    old = CUTOFF - timedelta(seconds=1)
    await add_task(sessions, client_id, "completed", old, delivery_state="succeeded")
    await add_task(sessions, client_id, "expired", old, delivery_state="failed")
    await add_task(sessions, client_id, "failed", old - timedelta(days=300))
    await add_task(sessions, client_id, "cancelled", old)
    assert (await remaining(sessions, client_id))["attempts"] == 2

    await purge(sessions).run(NOW)

    assert await remaining(sessions, client_id) == {
        "tasks": 0,
        "events": 0,
        "deliveries": 0,
        "attempts": 0,
    }


async def test_tasks_within_retention_and_pending_tasks_stay(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client_id = await insert_client(sessions)
    kept = {
        await add_task(sessions, client_id, "completed", CUTOFF, delivery_state="succeeded"),
        await add_task(sessions, client_id, "failed", CUTOFF + timedelta(days=1)),
        # Registered long ago and never finished: pending tasks are never purged.
        await add_task(sessions, client_id, "pending", None),
    }
    async with transaction(sessions) as session:
        await session.execute(
            text("UPDATE tasks SET registered_at = :t WHERE client_id = :c AND state = 'pending'"),
            {"t": NOW - timedelta(days=90), "c": client_id},
        )

    await purge(sessions).run(NOW)

    assert await task_ids(sessions, client_id) == kept
    assert (await remaining(sessions, client_id))["attempts"] == 1


async def test_a_finished_task_whose_webhook_is_still_pending_waits_for_it(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client_id = await insert_client(sessions)
    old = CUTOFF - timedelta(days=1)
    in_delivery = await add_task(sessions, client_id, "completed", old, delivery_state="pending")

    await purge(sessions).run(NOW)
    assert await task_ids(sessions, client_id) == {in_delivery}

    async with transaction(sessions) as session:
        await session.execute(
            text("UPDATE deliveries SET state = 'succeeded' WHERE client_id = :c"),
            {"c": client_id},
        )
    await purge(sessions).run(NOW)
    assert await task_ids(sessions, client_id) == set()


async def test_a_run_deletes_in_batches_up_to_its_limit_and_the_next_run_goes_on(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client_id = await insert_client(sessions)
    await add_old_finished(sessions, client_id, 5)

    await purge(sessions, batch=2, max_batches=2).run(NOW)
    assert len(await task_ids(sessions, client_id)) <= 1

    await purge(sessions, batch=2, max_batches=2).run(NOW)
    assert await task_ids(sessions, client_id) == set()


async def test_a_second_purger_stands_aside_while_one_holds_the_turn(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client_id = await insert_client(sessions)
    old_ids = set(await add_old_finished(sessions, client_id, 3))

    async with transaction(sessions) as holder:
        assert await take_turn(holder, RETENTION_LOCK_ID) is True
        await purge(sessions).run(NOW)
        assert await task_ids(sessions, client_id) == old_ids

    await purge(sessions).run(NOW)
    assert await task_ids(sessions, client_id) == set()


async def test_submissions_past_the_idempotency_window_and_expired_early_hints_go(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client_id = await insert_client(sessions)
    async with transaction(sessions) as session:
        for key, created_at in (("old", NOW - timedelta(hours=25)), ("new", NOW)):
            await session.execute(
                text(
                    "INSERT INTO check_submissions (client_id, idempotency_key, fingerprint,"
                    " state, phone_number_masked, created_at, lease_until)"
                    " VALUES (:c, :k, '\\x00', 'answered', '52****1234', :t, :t)"
                ),
                {"c": client_id, "k": key, "t": created_at},
            )
        for task_id, expires_at in (
            ("gone", NOW - timedelta(seconds=1)),
            ("kept", NOW + timedelta(hours=1)),
        ):
            await session.execute(
                text(
                    "INSERT INTO early_hints (client_id, task_id, received_at, expires_at)"
                    " VALUES (:c, :t, :now, :e)"
                ),
                {"c": client_id, "t": task_id, "now": NOW, "e": expires_at},
            )

    await purge(sessions).run(NOW)

    async with transaction(sessions) as session:
        keys = (
            await session.execute(
                text("SELECT idempotency_key FROM check_submissions WHERE client_id = :c"),
                {"c": client_id},
            )
        ).scalars()
        hints = (
            await session.execute(
                text("SELECT task_id FROM early_hints WHERE client_id = :c"), {"c": client_id}
            )
        ).scalars()
        assert list(keys) == ["new"]
        assert list(hints) == ["kept"]
