"""The queue of numbers to submit later (service/store/scheduled_submits.py) and what a re-check
writes to its task (service/store/rechecks.py), statement by statement on the real PostgreSQL: the
sealed number kept only while a submit can come (a constraint), the fair leased claim, the mark
before the call, the hand-back, a lost submit declared unknown once, and a re-submit's answer in
the task and its story."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.domain.answers import PhoneResult
from service.domain.rechecks import RecheckPolicy
from service.store.checks import NewTask, record_submitted_task
from service.store.db import transaction
from service.store.history import POLL_HISTORY_LIMIT
from service.store.rechecks import (
    InstantAnswer,
    end_lost_rechecks,
    end_with_last_answer,
    record_recheck_last_answer,
    record_recheck_submitted,
)
from service.store.scheduled_submits import (
    ClaimedSubmit,
    begin_submit,
    claim_due_submits,
    hand_back_submit,
    hold_number_for_rechecks,
    load_claimed_submits,
    replace_sealed_number,
    sealed_recheck_numbers_after,
)
from tests.support.checks import PHONE_MASKED
from tests.support.factories import insert_client
from tests.support.rows import cancel_pending_tasks, events_of, tasks_of


def with_instant(entry: dict[str, Any]) -> dict[str, Any]:
    """A JSON entry of a task with its `at` read as the instant it names."""
    return {**entry, "at": datetime.fromisoformat(entry["at"])}


SEALED = b"\x01" + b"\x00" * 12 + b"not a real seal"
RETRY = PhoneResult("5255********", "temp_unavailable")


@pytest.fixture(autouse=True)
async def no_foreign_submits(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Re-checks other tests left waiting would be claimed with ours."""
    await cancel_pending_tasks(sessions)


async def waiting_recheck(
    sessions: async_sessionmaker[AsyncSession],
    client_id: int,
    now: datetime,
    *,
    due_in: timedelta = timedelta(seconds=1),
) -> int:
    """A submitted check answered `temp_unavailable`, waiting for its re-check; its pk."""
    async with transaction(sessions) as session:
        task = await record_submitted_task(
            session,
            NewTask(
                client_id=client_id,
                task_id=f"T-{uuid.uuid4().hex}",
                masked=PHONE_MASKED,
                metadata_json="{}",
                now=now,
                expires_at=now + due_in + timedelta(hours=1),
                first_poll_at=now,
                result=RETRY,
                request_id="TID1",
                recheck=RecheckPolicy(after_s=60, max_rechecks=2),
                waits_for_recheck=True,
            ),
        )
        await hold_number_for_rechecks(
            session,
            client_id=client_id,
            task_pk=task.id,
            sealed=SEALED,
            due_at=now + due_in,
            now=now,
        )
    return task.id


async def claimed(
    sessions: async_sessionmaker[AsyncSession], now: datetime, limit: int = 100
) -> tuple[uuid.UUID, list[ClaimedSubmit]]:
    async with transaction(sessions) as session:
        token, ids = await claim_due_submits(session, now, lease_s=30, limit=limit)
        return token, await load_claimed_submits(session, ids, token, now)


async def began(
    sessions: async_sessionmaker[AsyncSession],
    submit: ClaimedSubmit,
    token: uuid.UUID,
    now: datetime,
) -> bool:
    async with transaction(sessions) as session:
        return await begin_submit(session, submit, token, now, now + timedelta(seconds=8))


async def row_of(sessions: async_sessionmaker[AsyncSession], task_pk: int) -> dict[str, object]:
    async with sessions() as session:
        row = (
            await session.execute(
                text("SELECT * FROM scheduled_submits WHERE task_pk = :t"), {"t": task_pk}
            )
        ).one()
    return dict(row._mapping)


async def test_a_submit_keeps_its_number_exactly_while_it_can_be_made(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client = await insert_client(sessions)
    task_pk = await waiting_recheck(sessions, client, utc_now())
    for change in (
        "state = 'done'",  # done, the number still there
        "state = 'unknown'",
        "phone_number_sealed = NULL",  # waiting, the number gone
        "due_at = NULL",  # waiting, due never
    ):
        with pytest.raises(IntegrityError, match="ck_scheduled_submits"):
            async with transaction(sessions) as session:
                await session.execute(
                    text(f"UPDATE scheduled_submits SET {change} WHERE task_pk = :t"),  # noqa: S608
                    {"t": task_pk},
                )


async def test_the_claim_takes_only_due_submits_shares_them_between_clients_and_leases_them(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # An hour ahead of the wall clock, which a scheduler still running in this database (another
    # test's engine) claims by: in CI this test's first submit was once missing from its claim.
    now = utc_now() + timedelta(hours=1)
    busy, quiet = await insert_client(sessions), await insert_client(sessions)
    # Due a millisecond apart: among submits due at the same instant the claim takes any (its
    # per-client scan is ordered by due_at alone, which the partial index gives without a sort).
    busy_pks = [
        await waiting_recheck(sessions, busy, now, due_in=timedelta(seconds=1, milliseconds=n))
        for n in range(4)
    ]
    quiet_pk = await waiting_recheck(sessions, quiet, now)
    later_pk = await waiting_recheck(sessions, quiet, now, due_in=timedelta(minutes=5))

    token, first = await claimed(sessions, now + timedelta(seconds=2), limit=2)
    _, second = await claimed(sessions, now + timedelta(seconds=2))

    # Both clients get a turn in a round too small for all; nothing is claimed twice under a
    # live lease, and what is not due is not claimed.
    assert {submit.task_pk for submit in first} == {busy_pks[0], quiet_pk}
    assert {submit.task_pk for submit in second} == set(busy_pks[1:])
    assert later_pk not in {submit.task_pk for submit in first + second}
    submit = first[0]
    assert submit.phone_number_sealed == SEALED
    assert submit.recheck == RecheckPolicy(after_s=60, max_rechecks=2)
    assert submit.rechecks_done == 0
    assert (await row_of(sessions, submit.task_pk))["lease_token"] == token


async def test_a_submit_is_marked_once_with_its_task_leased_and_handed_back_unsent(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = utc_now()
    client = await insert_client(sessions)
    task_pk = await waiting_recheck(sessions, client, now)
    token, [submit] = await claimed(sessions, now + timedelta(seconds=2))

    assert not await began(sessions, submit, uuid.uuid4(), now + timedelta(seconds=2))
    assert await began(sessions, submit, token, now + timedelta(seconds=2))
    assert not await began(sessions, submit, token, now + timedelta(seconds=2))
    task = (await tasks_of(sessions, client))[submit.task_id]
    assert (await row_of(sessions, task_pk))["state"] == "submitting"
    assert task["lease_token"] == token

    async with transaction(sessions) as session:
        await hand_back_submit(session, submit, token, now, now + timedelta(minutes=1))
    row = await row_of(sessions, task_pk)
    assert (row["state"], row["due_at"], row["lease_token"]) == (
        "waiting",
        now + timedelta(minutes=1),
        None,
    )
    assert (await tasks_of(sessions, client))[submit.task_id]["lease_token"] is None


async def test_a_submit_whose_worker_died_is_unknown_once_and_its_task_ends_with_its_answer(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = utc_now()
    client = await insert_client(sessions)
    task_pk = await waiting_recheck(sessions, client, now)
    token, [submit] = await claimed(sessions, now + timedelta(seconds=2))
    assert await began(sessions, submit, token, now + timedelta(seconds=2))

    async with transaction(sessions) as session:
        assert await end_lost_rechecks(session, now + timedelta(seconds=5), limit=10) == []
    async with transaction(sessions) as session:
        ended = await end_lost_rechecks(session, now + timedelta(seconds=11), limit=10)
    async with transaction(sessions) as session:
        again = await end_lost_rechecks(session, now + timedelta(seconds=12), limit=10)

    assert [task.id for task in ended] == [task_pk]
    assert again == []
    task = (await tasks_of(sessions, client))[submit.task_id]
    assert task["state"] == "completed"
    assert task["result"] == RETRY.as_json()
    assert task["last_error"]["code"] == "SUBMIT_OUTCOME_UNKNOWN"
    assert task["lease_token"] is None
    row = await row_of(sessions, task_pk)
    assert (row["state"], row["phone_number_sealed"]) == ("unknown", None)
    assert [event["type"] for event in await events_of(sessions, client)] == ["task.completed"]


async def test_a_taken_resubmit_moves_the_answer_into_rechecks_and_polls_the_new_task(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = utc_now()
    client = await insert_client(sessions)
    task_pk = await waiting_recheck(sessions, client, now)
    at = now + timedelta(seconds=2)
    token, [submit] = await claimed(sessions, at)
    assert await began(sessions, submit, token, at)

    async with transaction(sessions) as session:
        written = await record_recheck_submitted(
            session,
            submit,
            token,
            upstream_task_id="T-second",
            request_id="TID2",
            code="PENDING",
            next_poll_at=at + timedelta(seconds=2),
            expires_at=at + timedelta(days=1),
            keep_number=True,
            now=at,
        )

    assert written
    task = (await tasks_of(sessions, client))[submit.task_id]
    assert task["state"] == "pending"
    assert task["result"] is None
    # PostgreSQL writes a JSON timestamp without the microseconds' trailing zeros (".78702"
    # where Python writes ".787020"): the instants are compared, not their text.
    assert [with_instant(entry) for entry in task["rechecks"]] == [
        {"task_id": submit.task_id, "phone_status": "temp_unavailable", "at": now}
    ]
    assert (task["upstream_task_id"], task["upstream_submitted_at"]) == ("T-second", at)
    assert task["next_poll_at"] == at + timedelta(seconds=2)
    assert task["lease_token"] is None
    assert with_instant(task["poll_history"][-1]) == {
        "at": at,
        "call": "submit",
        "code": "PENDING",
        "task_id": "T-second",
        "request_id": "TID2",
    }
    assert len(task["poll_history"]) <= POLL_HISTORY_LIMIT
    # Another re-check may follow: the number waits on standby for this check's answer.
    row = await row_of(sessions, task_pk)
    assert (row["state"], row["phone_number_sealed"]) == ("standby", SEALED)


async def test_a_last_answer_at_once_ends_the_task_with_one_event_and_erases_the_number(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = utc_now()
    client = await insert_client(sessions)
    task_pk = await waiting_recheck(sessions, client, now)
    at = now + timedelta(seconds=2)
    token, [submit] = await claimed(sessions, at)
    assert await began(sessions, submit, token, at)

    async with transaction(sessions) as session:
        finished = await record_recheck_last_answer(
            session,
            submit,
            token,
            InstantAnswer("instant-1", PhoneResult("5255********", "ring"), "TID3", "OK"),
            now=at,
        )

    assert finished is not None
    assert finished.state == "completed"
    task = (await tasks_of(sessions, client))[submit.task_id]
    assert task["result"]["phone_status"] == "ring"
    assert [entry["phone_status"] for entry in task["rechecks"]] == ["temp_unavailable"]
    row = await row_of(sessions, task_pk)
    assert (row["state"], row["phone_number_sealed"]) == ("done", None)
    assert len(await events_of(sessions, client)) == 1


async def test_nothing_is_written_for_a_submit_that_is_no_longer_this_workers(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = utc_now()
    client = await insert_client(sessions)
    task_pk = await waiting_recheck(sessions, client, now)
    at = now + timedelta(seconds=2)
    token, [submit] = await claimed(sessions, at)
    assert await began(sessions, submit, token, at)
    # The client cancels while the call is in flight: the cancel wins.
    async with transaction(sessions) as session:
        await session.execute(
            text(
                "UPDATE tasks SET state = 'cancelled', lease_token = NULL, lease_until = NULL"
                " WHERE id = :t"
            ),
            {"t": task_pk},
        )

    async with transaction(sessions) as session:
        ended = await end_with_last_answer(
            session,
            submit,
            token,
            last_error={"code": "INVALID_ARGUMENT", "message": "no", "at": at.isoformat()},
            request_id=None,
            code="INVALID_ARGUMENT",
            outcome_unknown=False,
            now=at,
        )

    assert ended is None
    assert (await tasks_of(sessions, client))[submit.task_id]["state"] == "cancelled"
    assert await events_of(sessions, client) == []


async def test_a_resealed_number_replaces_only_the_number_that_was_read(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A reseal (service/features/reseal.py) finds each kept re-check number with what it is
    bound to, and its write loses to an erase made since its read."""
    client_id = await insert_client(sessions)
    task_pk = await waiting_recheck(sessions, client_id, utc_now())
    async with transaction(sessions) as session:
        task_id = (
            await session.execute(text("SELECT task_id FROM tasks WHERE id = :pk"), {"pk": task_pk})
        ).scalar_one()
        [read] = [
            kept
            for kept in await sealed_recheck_numbers_after(session, 0, 10_000)
            if kept.client_id == client_id
        ]
        assert (read.task_id, read.phone_number_sealed) == (task_id, SEALED)
        assert await replace_sealed_number(session, read, SEALED + b"!")
        assert not await replace_sealed_number(session, read, SEALED + b"?")
    await cancel_pending_tasks(sessions)  # erases the number, as a task's end does
    async with transaction(sessions) as session:
        assert not [
            kept
            for kept in await sealed_recheck_numbers_after(session, 0, 10_000)
            if kept.client_id == client_id
        ]
