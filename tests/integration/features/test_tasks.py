"""service.features.tasks: register, find, list, cancel, a batch, and the malformed-id rule."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from psycopg.rows import DictRow
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.domain.intake import Registration, validate_registration
from service.domain.states import TaskState
from service.features import tasks
from service.features.errors import NotFound, TaskAlreadyFinal
from tests.support.factories import insert_client

Conn = psycopg.AsyncConnection[DictRow]
IntakeConn = tasks.IntakeConnection
TTL = timedelta(days=1)


def registration(task_id: str) -> Registration:
    checked = validate_registration({"task_id": task_id}, now=utc_now(), ttl=TTL)
    assert isinstance(checked, Registration)
    return checked


async def test_a_registered_task_is_found_and_registering_it_again_returns_it(
    conn: Conn, intake_conn: IntakeConn, client_id: int
) -> None:
    row, created = await tasks.register_task(intake_conn, client_id, registration("T-1"), utc_now())
    again, created_again = await tasks.register_task(
        intake_conn, client_id, registration("T-1"), utc_now()
    )

    assert (created, created_again) == (True, False)
    assert again.id == row.id
    assert (await tasks.find_task(conn, client_id, "T-1")).state is TaskState.PENDING


@pytest.mark.parametrize("task_id", ["no spaces", "nul\x00byte", "x" * 129, ""])
async def test_an_id_that_cannot_be_a_task_id_is_not_found(
    conn: Conn, client_id: int, task_id: str
) -> None:
    with pytest.raises(NotFound) as refused:
        await tasks.find_task(conn, client_id, task_id)
    assert refused.value.resource == "task"


async def test_another_clients_task_is_not_found(
    conn: Conn, intake_conn: IntakeConn, client_id: int, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await tasks.register_task(intake_conn, client_id, registration("T-mine"), utc_now())
    stranger = await insert_client(sessions)

    with pytest.raises(NotFound, match="no task 'T-mine' registered by this client"):
        await tasks.find_task(conn, stranger, "T-mine")


async def test_a_list_pages_newest_first_and_says_when_another_page_follows(
    conn: Conn, intake_conn: IntakeConn, client_id: int
) -> None:
    for task_id in ("T-a", "T-b", "T-c"):
        await tasks.register_task(intake_conn, client_id, registration(task_id), utc_now())

    first = await tasks.list_tasks(conn, client_id, state=None, before_id=None, size=2)
    assert [row.task_id for row in first.items] == ["T-c", "T-b"]
    assert first.more
    assert first.last is not None

    second = await tasks.list_tasks(conn, client_id, state=None, before_id=first.last.id, size=2)
    assert [row.task_id for row in second.items] == ["T-a"]
    assert (second.more, second.last) == (False, None)


async def test_a_pending_task_is_cancelled_once_then_refused_as_already_final(
    conn: Conn, intake_conn: IntakeConn, client_id: int
) -> None:
    await tasks.register_task(intake_conn, client_id, registration("T-x"), utc_now())

    cancelled = await tasks.cancel_task(conn, client_id, "T-x", utc_now())
    assert cancelled.state is TaskState.CANCELLED
    with pytest.raises(TaskAlreadyFinal, match="already cancelled"):
        await tasks.cancel_task(conn, client_id, "T-x", utc_now())
    with pytest.raises(NotFound):
        await tasks.cancel_task(conn, client_id, "T-never", utc_now())


async def test_a_batch_registers_each_distinct_valid_task_once_in_entry_order(
    conn: Conn, intake_conn: IntakeConn, client_id: int
) -> None:
    await tasks.register_task(intake_conn, client_id, registration("T-old"), utc_now())
    now = utc_now()
    batch = tasks.check_batch(
        [{"task_id": "T-new"}, {"task_id": "T-new"}, {"task_id": "T-old"}, {"task_id": ""}],
        now,
        TTL,
    )

    created = await tasks.register_batch(conn, client_id, batch, now)
    outcomes = tasks.batch_outcomes(batch, created)

    assert [(o.task_id, o.outcome) for o in outcomes] == [
        ("T-new", "created"),
        ("T-new", "existing"),
        ("T-old", "existing"),
        ("", "rejected"),
    ]
    assert outcomes[3].detail


async def test_a_task_story_has_no_event_or_delivery_while_pending(
    conn: Conn, intake_conn: IntakeConn, session: AsyncSession, client_id: int
) -> None:
    await tasks.register_task(intake_conn, client_id, registration("T-story"), utc_now())

    found = await tasks.task_with_story(conn, session, client_id, "T-story")

    assert found.task.task_id == "T-story"
    assert (found.story.event_id, found.deliveries) == (None, [])


async def test_a_task_registered_on_asyncpg_reads_the_same_as_on_psycopg(
    conn: Conn, intake_conn: IntakeConn, client_id: int
) -> None:
    # The intake pool (asyncpg) answers the registration; every other read is psycopg's: the
    # same row either way, metadata's large integers, nesting and text included.
    metadata = {"big": 2**70, "ü": [1, {"a": None, "b": 1.5}], "s": "x\u2028y"}
    checked = validate_registration(
        {"task_id": "T-same", "metadata": metadata}, now=utc_now(), ttl=TTL
    )
    assert isinstance(checked, Registration)

    created, _ = await tasks.register_task(intake_conn, client_id, checked, utc_now())
    existing, was_created = await tasks.register_task(intake_conn, client_id, checked, utc_now())

    found = await tasks.find_task(conn, client_id, "T-same")
    assert created == found == existing
    assert not was_created
    assert created.metadata == metadata
    assert created.submitted_at.utcoffset() == timedelta(0)
