"""Check job items as the engine submits them (service/store/job_items.py) on the real
PostgreSQL: the claim loads only the items of a job that may submit, the mark before the call is
refused once the job is paused, and an item lost while submitting becomes unknown once, its
number erased; an answer written after that leaves no task (nor uses up an early hint, nor
writes an event), as one statement in autocommit or in a transaction; one written in time makes
the item `submitted` with its task (and its event when upstream answered at once)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.config import Settings
from service.domain.answers import PhoneResult
from service.domain.job_lifecycle import JobMove
from service.domain.states import TaskState
from service.features import check_jobs as job_feature
from service.store import check_job_results as result_store
from service.store.check_jobs import JobRow
from service.store.checks import SubmittedTask
from service.store.db import one_statement, transaction
from service.store.job_items import (
    ClaimedItem,
    ItemNoLongerOurs,
    begin_item_submit,
    count_items_to_submit,
    end_lost_items,
    load_claimed_items,
    record_item_task,
)
from service.store.scheduled_submits import claim_due_submits
from tests.support.factories import insert_client
from tests.support.jobs import mx_number
from tests.support.jobs_store import PACE, make_job
from tests.support.rows import cancel_pending_tasks


@pytest.fixture(autouse=True)
async def no_foreign_submits(sessions: async_sessionmaker[AsyncSession]) -> None:
    await cancel_pending_tasks(sessions)


async def test_a_claimed_item_of_a_job_paused_since_is_not_marked_submitting(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    client = await insert_client(sessions)
    job = await make_job(sessions, settings, client)
    now = utc_now()
    async with transaction(sessions) as session:
        assert (await count_items_to_submit(session))["waiting"] == 3
        token, ids = await claim_due_submits(session, now, lease_s=30, limit=10)
        items = await load_claimed_items(session, ids, token, now)
    assert [item.line for item in items] == [1, 2, 3]
    assert items[0].masked == "52******0000"
    async with transaction(sessions) as session:
        await job_feature.move_job_by_client(
            session, client, job.public_id, JobMove.PAUSE, PACE, now
        )
    async with transaction(sessions) as session:
        began = await begin_item_submit(session, items[0], token, now, now + timedelta(seconds=9))
    assert began is False


async def submitting(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, *, marked: int
) -> tuple[JobRow, uuid.UUID, list[ClaimedItem], datetime]:
    """A new job of three items, all claimed, the first `marked` marked `submitting` with a
    lease of 1 s: the job, the claim's token, the items and the time of the marks."""
    client = await insert_client(sessions)
    job = await make_job(sessions, settings, client)
    now = utc_now()
    async with transaction(sessions) as session:
        token, ids = await claim_due_submits(session, now, lease_s=30, limit=10)
        items = await load_claimed_items(session, ids, token, now)
        for item in items[:marked]:
            assert await begin_item_submit(session, item, token, now, now + timedelta(seconds=1))
    return job, token, items, now


async def test_an_item_lost_while_submitting_is_unknown_once_and_its_number_erased(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    job, _, _, now = await submitting(sessions, settings, marked=1)
    later = now + timedelta(seconds=2)
    async with transaction(sessions) as session:
        lost = await end_lost_items(session, later, limit=10)
        again = await end_lost_items(session, later, limit=10)
        sealed = (
            await session.execute(
                text(
                    "SELECT state, phone_number_sealed FROM scheduled_submits "
                    "WHERE job_pk = :j AND job_line = 1"
                ),
                {"j": job.id},
            )
        ).one()
        rows = await result_store.result_page(session, job.id, after_line=0, limit=10)
    assert lost == [(job.id, 1)]
    assert again == []
    assert (sealed.state, sealed.phone_number_sealed) == ("unknown", None)
    assert [row.state for row in rows] == ["unknown", "waiting", "waiting"]


@pytest.mark.parametrize("unit", [transaction, one_statement], ids=["transaction", "one_statement"])
async def test_an_answer_written_in_time_makes_the_item_submitted_and_too_late_no_task(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, unit: Unit
) -> None:
    """A pending answer is one statement: the engine writes it in autocommit (`one_statement`)."""
    job, token, items, now = await submitting(sessions, settings, marked=2)
    async with transaction(sessions) as session:
        assert await end_lost_items(session, now + timedelta(seconds=2), limit=1) == [(job.id, 1)]
    await hint_before(sessions, items[0].client_id, [f"job-item-task-{job.id}-{n}" for n in (1, 2)])

    async def record(line: int) -> None:
        async with unit(sessions) as session:
            await record_item_task(
                session, items[line - 1], token, **answer(f"job-item-task-{job.id}-{line}", now)
            )

    with pytest.raises(ItemNoLongerOurs):
        await record(1)
    await record(2)
    tasks = await job_tasks(sessions, job.id)
    assert [t.task_id for t in tasks] == [f"job-item-task-{job.id}-2"]
    assert await item_states(sessions, job.id) == [
        (1, "unknown", None),
        (2, "submitted", tasks[0].id),
        (3, "waiting", None),
    ]
    assert await submit_states(sessions, job.id) == [("unknown", None), ("done", None)]
    assert await hints_left(sessions, items[0].client_id) == [f"job-item-task-{job.id}-1"]


async def test_an_answer_final_at_once_comes_with_its_event_and_too_late_writes_nothing(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    job, token, items, now = await submitting(sessions, settings, marked=2)
    async with transaction(sessions) as session:
        assert await end_lost_items(session, now + timedelta(seconds=2), limit=1) == [(job.id, 1)]
    await hint_before(
        sessions, items[0].client_id, [f"job-item-final-{job.id}-{n}" for n in (1, 2)]
    )

    async def record(line: int) -> SubmittedTask:
        async with transaction(sessions) as session:
            return await record_item_task(
                session,
                items[line - 1],
                token,
                **answer(f"job-item-final-{job.id}-{line}", now, result=RING),
            )

    with pytest.raises(ItemNoLongerOurs):
        await record(1)
    task = await record(2)
    assert (task.state, task.created) == (TaskState.COMPLETED, True)
    tasks = await job_tasks(sessions, job.id)
    assert [t.task_id for t in tasks] == [f"job-item-final-{job.id}-2"]
    async with transaction(sessions) as session:
        events = (
            await session.execute(
                text("SELECT type FROM events WHERE task_pk = :t"), {"t": task.id}
            )
        ).scalars()
        assert list(events) == ["task.completed"]
    assert await hints_left(sessions, items[0].client_id) == [f"job-item-final-{job.id}-1"]
    assert await item_states(sessions, job.id) == [
        (1, "unknown", None),
        (2, "submitted", task.id),
        (3, "waiting", None),
    ]


Unit = Callable[[async_sessionmaker[AsyncSession]], AbstractAsyncContextManager[AsyncSession]]
RING = PhoneResult("52******0000", "ring")


def answer(task_id: str, now: datetime, result: PhoneResult | None = None) -> dict[str, Any]:
    """`record_item_task`'s answer for a task due a second from `now`."""
    return {
        "task_id": task_id,
        "result": result,
        "request_id": None,
        "now": now,
        "expires_at": now + timedelta(days=1),
        "first_poll_at": now + timedelta(seconds=1),
        "safety_net_poll_at": None,
        "waits_for_recheck": False,
    }


async def hint_before(
    sessions: async_sessionmaker[AsyncSession], client_id: int, task_ids: list[str]
) -> None:
    """Callbacks that came before these tasks (early hints): only a task written uses it up."""
    now = utc_now()
    async with transaction(sessions) as session:
        for task_id in task_ids:
            await session.execute(
                text(
                    "INSERT INTO early_hints (client_id, task_id, received_at, expires_at)"
                    " VALUES (:c, :t, :now, :until)"
                ),
                {"c": client_id, "t": task_id, "now": now, "until": now + timedelta(hours=1)},
            )


async def hints_left(sessions: async_sessionmaker[AsyncSession], client_id: int) -> list[str]:
    async with transaction(sessions) as session:
        result = await session.execute(
            text("SELECT task_id FROM early_hints WHERE client_id = :c ORDER BY task_id"),
            {"c": client_id},
        )
        return [str(task_id) for task_id in result.scalars()]


async def job_tasks(sessions: async_sessionmaker[AsyncSession], job_pk: int) -> list[Row[Any]]:
    async with transaction(sessions) as session:
        result = await session.execute(
            text("SELECT id, task_id FROM tasks WHERE job_pk = :j ORDER BY task_id"), {"j": job_pk}
        )
        return list(result.all())


async def item_states(
    sessions: async_sessionmaker[AsyncSession], job_pk: int
) -> list[tuple[int, str, int | None]]:
    async with transaction(sessions) as session:
        rows = await session.execute(
            text(
                "SELECT line, state, task_pk FROM check_job_items WHERE job_pk = :j ORDER BY line"
            ),
            {"j": job_pk},
        )
        return [(int(row.line), str(row.state), row.task_pk) for row in rows]


async def submit_states(
    sessions: async_sessionmaker[AsyncSession], job_pk: int
) -> list[tuple[str, bytes | None]]:
    """The state and sealed number of the job's submits that ended (line order)."""
    async with transaction(sessions) as session:
        rows = await session.execute(
            text(
                "SELECT state, phone_number_sealed FROM scheduled_submits"
                " WHERE job_pk = :j AND state <> 'waiting' ORDER BY job_line"
            ),
            {"j": job_pk},
        )
        return [(str(row.state), row.phone_number_sealed) for row in rows]


async def test_the_claim_shares_a_round_between_two_clients_jobs(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    alice, bob = await insert_client(sessions), await insert_client(sessions)
    await make_job(sessions, settings, alice, [mx_number(i) for i in range(10)])
    await make_job(sessions, settings, bob, [mx_number(i) for i in range(10)])
    now = utc_now()
    async with transaction(sessions) as session:
        token, ids = await claim_due_submits(session, now, lease_s=30, limit=4)
        items = await load_claimed_items(session, ids, token, now)
    assert sorted(item.client_id for item in items) == sorted([alice, alice, bob, bob])
