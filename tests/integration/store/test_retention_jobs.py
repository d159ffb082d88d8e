"""Retention of check jobs and of the budget's ledger: a job that finished (completed or
cancelled) before the cutoff goes with its items, rejections, scheduled submits and
`job.completed` event, a bounded number of rows per batch, after its tasks; the ledger keeps
today and the two days before it.

The clock is a parameter: jobs are made and cancelled at times placed around the cutoff.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.domain.job_lifecycle import JobMove
from service.engine.retention import RetentionPurge
from service.features import check_jobs as job_feature
from service.store.check_jobs import JobRow
from service.store.db import transaction
from tests.support.factories import insert_client
from tests.support.jobs import mx_number
from tests.support.jobs_store import PACE, make_job

RETENTION_DAYS = 30.0
NOW = datetime.now(UTC).replace(microsecond=0)
CUTOFF = NOW - timedelta(days=RETENTION_DAYS)
OLD = CUTOFF - timedelta(hours=1)
# Not a number: the job's one rejection.
NOT_A_NUMBER = "12345"


def purge(
    sessions: async_sessionmaker[AsyncSession], *, batch: int = 500, max_batches: int = 100
) -> RetentionPurge:
    return RetentionPurge(sessions, RETENTION_DAYS, batch=batch, max_batches=max_batches)


async def cancelled_job(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    client_id: int,
    at: datetime,
    *,
    items: int = 3,
) -> JobRow:
    """A job of `items` numbers and one rejection, created and cancelled at `at`: its submits
    done, its `job.completed` written."""
    numbers = [mx_number(i) for i in range(items)] + [NOT_A_NUMBER]
    job = await make_job(sessions, settings, client_id, numbers, now=at)
    async with transaction(sessions) as session:
        await job_feature.move_job_by_client(
            session, client_id, job.public_id, JobMove.CANCEL, PACE, at
        )
    return job


async def job_rows(sessions: async_sessionmaker[AsyncSession], job_pk: int) -> dict[str, int]:
    """The job's own row and the rows hanging off it, by table."""
    async with sessions() as session:
        row = (
            await session.execute(
                text(
                    """
                    SELECT
                      (SELECT count(*) FROM check_jobs WHERE id = :j) AS jobs,
                      (SELECT count(*) FROM check_job_items WHERE job_pk = :j) AS items,
                      (SELECT count(*) FROM check_job_rejections WHERE job_pk = :j) AS rejections,
                      (SELECT count(*) FROM scheduled_submits WHERE job_pk = :j) AS submits,
                      (SELECT count(*) FROM events WHERE job_pk = :j) AS events
                    """
                ),
                {"j": job_pk},
            )
        ).one()
        return dict(row._mapping)


GONE = {"jobs": 0, "items": 0, "rejections": 0, "submits": 0, "events": 0}


async def test_a_job_finished_before_the_cutoff_goes_with_everything_hanging_off_it(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    client_id = await insert_client(sessions)
    old = await cancelled_job(sessions, settings, client_id, OLD)
    assert await job_rows(sessions, old.id) == {
        "jobs": 1,
        "items": 3,
        "rejections": 1,
        "submits": 3,
        "events": 1,
    }
    recent = await cancelled_job(sessions, settings, client_id, CUTOFF + timedelta(hours=1))
    # Never finished, however old: running, and a draft never started.
    running = await make_job(sessions, settings, client_id, now=OLD - timedelta(days=9))
    draft = await make_job(sessions, settings, client_id, start=False, now=OLD)

    await purge(sessions).run(NOW)

    assert await job_rows(sessions, old.id) == GONE
    assert (await job_rows(sessions, recent.id))["items"] == 3
    assert (await job_rows(sessions, running.id))["jobs"] == 1
    assert (await job_rows(sessions, draft.id))["submits"] == 3


async def test_a_big_job_goes_a_bounded_batch_at_a_time_and_its_row_last(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    await purge(sessions).run(NOW)  # nothing old is left from elsewhere
    client_id = await insert_client(sessions)
    job = await cancelled_job(sessions, settings, client_id, OLD, items=7)
    parts = 7 + 1 + 7  # items, the rejection, submits

    while parts > 3:
        await purge(sessions, batch=3, max_batches=1).run(NOW)
        rows = await job_rows(sessions, job.id)
        assert rows["items"] + rows["rejections"] + rows["submits"] == parts - 3
        assert rows["jobs"] == 1
        parts -= 3
    await purge(sessions, batch=3, max_batches=1).run(NOW)
    assert await job_rows(sessions, job.id) == GONE


async def test_a_job_waits_for_its_last_task_and_its_pending_completed_webhook(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    client_id = await insert_client(sessions)
    job = await cancelled_job(sessions, settings, client_id, OLD)
    async with transaction(sessions) as session:
        # A task of the job still kept (it finished within retention).
        await session.execute(
            text(
                """
                INSERT INTO tasks (client_id, task_id, state, submitted_at, registered_at,
                                   expires_at, completed_at, job_pk, job_id)
                VALUES (:c, :t, 'completed', :at, :at, :at + interval '1 day', :at, :j, :p)
                """
            ),
            {
                "c": client_id,
                "t": f"T-{secrets.token_hex(6)}",
                "at": CUTOFF + timedelta(minutes=1),
                "j": job.id,
                "p": job.public_id,
            },
        )
        await _pending_delivery_of_job_completed(session, client_id, job.id)

    await purge(sessions).run(NOW)
    assert (await job_rows(sessions, job.id))["items"] == 3

    async with transaction(sessions) as session:
        await session.execute(text("DELETE FROM tasks WHERE job_pk = :j"), {"j": job.id})
    await purge(sessions).run(NOW)
    assert (await job_rows(sessions, job.id))["items"] == 3

    async with transaction(sessions) as session:
        await session.execute(
            text("UPDATE deliveries SET state = 'succeeded' WHERE client_id = :c"),
            {"c": client_id},
        )
    await purge(sessions).run(NOW)
    assert await job_rows(sessions, job.id) == GONE


async def _pending_delivery_of_job_completed(
    session: AsyncSession, client_id: int, job_pk: int
) -> None:
    subscription_pk = (
        await session.execute(
            text(
                """
                INSERT INTO subscriptions (public_id, client_id, url, event_types,
                                           secret_encrypted)
                VALUES (:p, :c, 'https://example.com/hook', ARRAY['job.completed'], '\\x00')
                RETURNING id
                """
            ),
            {"p": f"sub_{secrets.token_hex(12)}", "c": client_id},
        )
    ).scalar_one()
    await session.execute(
        text(
            """
            INSERT INTO deliveries (public_id, event_id, subscription_id, client_id, state,
                                    next_attempt_at)
            SELECT :p, e.id, :s, :c, 'pending', now() FROM events e WHERE e.job_pk = :j
            """
        ),
        {"p": f"dlv_{secrets.token_hex(12)}", "s": subscription_pk, "c": client_id, "j": job_pk},
    )


async def test_the_budget_ledger_keeps_today_and_the_two_days_before(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client_id = await insert_client(sessions)
    today = NOW.date()
    async with transaction(sessions) as session:
        for back in range(5):
            await session.execute(
                text("INSERT INTO client_check_days (client_id, day, checks) VALUES (:c, :d, 1)"),
                {"c": client_id, "d": today - timedelta(days=back)},
            )

    await purge(sessions).run(NOW)

    async with sessions() as session:
        days = (
            await session.execute(
                text("SELECT day FROM client_check_days WHERE client_id = :c ORDER BY day"),
                {"c": client_id},
            )
        ).scalars()
        assert list(days) == [today - timedelta(days=back) for back in (2, 1, 0)]
