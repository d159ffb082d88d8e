"""Check job items, submitted by the engine: the second purpose of scheduled submits
(service/store/scheduled_submits.py has the claim, the lease and the write order they share).

For each claimed item (`load_claimed_items`: still leased to us, still waiting, its job queued
or running), the worker marks it `submitting` and commits (`begin_item_submit`, the one place a
check before spending, such as a budget, goes) before it calls upstream, then writes the answer
in one transaction:
- a task (`record_item_task`): in one statement, only while the item is still ours, its submit
  becomes `done` with the number erased, its task is inserted as any submitted check's
  (service/store/checks.py, `submitted_task_ctes`, with its job and number digest) and the item
  becomes `submitted` with it; its event follows in the same transaction when upstream answered
  at once. An item no longer ours writes nothing and raises `ItemNoLongerOurs`. (A pending task
  is thus written in one round trip: service/store/db.py `one_statement`.)
- upstream refused the number (INVALID_ARGUMENT): the item is `refused`, its submit `done`
  (`end_item`);
- the outcome cannot be known (the call may have reached upstream): the item and its submit
  are `unknown`, never submitted again (`end_item`); so is an item whose worker died while
  submitting (`end_lost_items`, once its lease has passed: the one SUBMIT_OUTCOME_UNKNOWN rule);
- nothing reached upstream (the pause, no slot, RATE_LIMIT_EXCEEDED, a refused connection):
  waiting again (`hand_back_item`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.answers import PhoneResult
from service.domain.jsontext import compact_json
from service.domain.rechecks import RecheckPolicy
from service.domain.states import (
    JobItemState,
    JobState,
    ScheduledSubmitPurpose,
    ScheduledSubmitState,
)
from service.store.checks import NewTask, SubmittedTask, submitted_task_ctes, task_written

_WAITING = ScheduledSubmitState.WAITING
_SUBMITTING = ScheduledSubmitState.SUBMITTING
_MAY_SUBMIT = f"('{JobState.QUEUED}', '{JobState.RUNNING}')"

_LOAD_CLAIMED = text(
    f"""
    SELECT s.id, s.client_id, s.job_pk, s.job_line, s.phone_number_sealed, s.lease_until,
           j.public_id AS job_id, j.recheck, i.metadata, i.phone_number_masked, i.number_digest
    FROM scheduled_submits AS s
    JOIN check_jobs AS j ON j.id = s.job_pk
    JOIN check_job_items AS i ON i.job_pk = s.job_pk AND i.line = s.job_line
    WHERE s.id = ANY(CAST(:ids AS bigint[])) AND s.lease_token = :token
      AND s.purpose = '{ScheduledSubmitPurpose.JOB_ITEM}' AND s.state = '{_WAITING}'
      AND s.lease_until > :now AND j.state IN {_MAY_SUBMIT}
      AND i.state = '{JobItemState.WAITING}'
    ORDER BY s.id
    """  # noqa: S608 - only enum values are interpolated
)

# The job row is read FOR SHARE: a cancel or pause (which updates it) waits for this to commit,
# and then finds the submit `submitting`, which it leaves to finish and be reported.
_BEGIN = text(
    f"""
    WITH job AS (
        SELECT id FROM check_jobs WHERE id = :job_pk AND state IN {_MAY_SUBMIT} FOR SHARE
    )
    UPDATE scheduled_submits SET state = '{_SUBMITTING}', lease_until = :lease_until,
                                 updated_at = :now
    WHERE id = :id AND job_pk = (SELECT id FROM job) AND lease_token = :token
      AND state = '{_WAITING}' AND lease_until > :now
    RETURNING id
    """  # noqa: S608 - only enum values are interpolated
)

_HAND_BACK = text(
    f"""
    UPDATE scheduled_submits SET state = '{_WAITING}', due_at = GREATEST(due_at, :due_at),
                                 lease_token = NULL, lease_until = NULL, updated_at = :now
    WHERE id = :id AND lease_token = :token AND state IN ('{_WAITING}', '{_SUBMITTING}')
    RETURNING id
    """  # noqa: S608 - only enum values are interpolated
)

# An item that made no task: its submit ends (`done` or `unknown`), its number erased, and the
# item with it; only while this worker still holds it `submitting` (one that made a task is
# `_RECORD_TASK`'s).
_END = text(
    f"""
    WITH ended AS (
        UPDATE scheduled_submits
        SET state = :submit_state, phone_number_sealed = NULL, due_at = NULL,
            lease_token = NULL, lease_until = NULL, updated_at = :now
        WHERE id = :id AND lease_token = :token AND state = '{_SUBMITTING}'
        RETURNING job_pk, job_line
    )
    UPDATE check_job_items AS i SET state = :item_state
    FROM ended
    WHERE i.job_pk = ended.job_pk AND i.line = ended.job_line
    RETURNING i.line
    """  # noqa: S608 - only enum values are interpolated
)

# The item's task, only while this worker still holds the item `submitting` (the parameters of
# service/store/checks.py's NewTask, with the submit's id and lease token).
_RECORD_TASK = text(
    f"""
    WITH ended AS (
        UPDATE scheduled_submits
        SET state = '{ScheduledSubmitState.DONE}', phone_number_sealed = NULL, due_at = NULL,
            lease_token = NULL, lease_until = NULL, updated_at = :now
        WHERE id = :submit_id AND lease_token = :token AND state = '{_SUBMITTING}'
        RETURNING job_pk, job_line
    ),
    {submitted_task_ctes("EXISTS (SELECT 1 FROM ended)")},
    item AS (
        UPDATE check_job_items AS i SET state = '{JobItemState.SUBMITTED}', task_pk = task.id
        FROM ended, task
        WHERE i.job_pk = ended.job_pk AND i.line = ended.job_line
    )
    SELECT * FROM task
    """  # noqa: S608 - only enum values are interpolated
)

_END_LOST = text(
    f"""
    WITH lost AS (
        SELECT id FROM scheduled_submits
        WHERE state = '{_SUBMITTING}' AND lease_until < :now
          AND purpose = '{ScheduledSubmitPurpose.JOB_ITEM}'
        ORDER BY lease_until
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    ),
    ended AS (
        UPDATE scheduled_submits AS s
        SET state = '{ScheduledSubmitState.UNKNOWN}', phone_number_sealed = NULL, due_at = NULL,
            lease_token = NULL, lease_until = NULL, updated_at = :now
        FROM lost WHERE s.id = lost.id
        RETURNING s.job_pk, s.job_line
    )
    UPDATE check_job_items AS i SET state = '{JobItemState.UNKNOWN}'
    FROM ended
    WHERE i.job_pk = ended.job_pk AND i.line = ended.job_line
      AND i.state = '{JobItemState.WAITING}'
    RETURNING i.job_pk, i.line
    """  # noqa: S608 - only enum values are interpolated
)

_ITEMS_TO_SUBMIT = text(
    f"""
    SELECT state, count(*) FROM scheduled_submits
    WHERE purpose = '{ScheduledSubmitPurpose.JOB_ITEM}'
      AND state IN ('{ScheduledSubmitState.STANDBY}', '{_WAITING}')
    GROUP BY state
    """  # noqa: S608 - only enum values are interpolated
)


@dataclass(frozen=True)
class ClaimedItem:
    """A check job item leased to this worker, with what its submit and its task need."""

    id: int
    client_id: int
    job_pk: int
    job_id: str
    line: int
    phone_number_sealed: bytes
    lease_until: datetime
    recheck: RecheckPolicy | None
    metadata_json: str
    masked: str
    number_digest: bytes


async def load_claimed_items(
    session: AsyncSession, ids: Sequence[int], token: uuid.UUID, now: datetime
) -> list[ClaimedItem]:
    """The job items among `ids` still leased under `token`, still waiting, their job queued or
    running."""
    result = await session.execute(_LOAD_CLAIMED, {"ids": list(ids), "token": token, "now": now})
    return [_claimed(row) for row in result]


async def begin_item_submit(
    session: AsyncSession,
    item: ClaimedItem,
    token: uuid.UUID,
    now: datetime,
    lease_until: datetime,
) -> bool:
    """Mark a claimed item `submitting` until `lease_until`; the caller commits before calling
    upstream. False when it is no longer ours to submit (its job paused or cancelled, its lease
    lost)."""
    row = (
        await session.execute(
            _BEGIN,
            {
                "id": item.id,
                "job_pk": item.job_pk,
                "token": token,
                "now": now,
                "lease_until": lease_until,
            },
        )
    ).one_or_none()
    return row is not None


async def hand_back_item(
    session: AsyncSession, item: ClaimedItem, token: uuid.UUID, now: datetime, due_at: datetime
) -> None:
    """Give an item back, waiting again from `due_at`, when nothing of it reached upstream."""
    await session.execute(_HAND_BACK, {"id": item.id, "token": token, "now": now, "due_at": due_at})


class ItemNoLongerOurs(Exception):
    """The item's lease passed (its outcome already ended `unknown`): `record_item_task` wrote
    nothing."""


async def record_item_task(
    session: AsyncSession,
    item: ClaimedItem,
    token: uuid.UUID,
    *,
    task_id: str,
    result: PhoneResult | None,
    request_id: str | None,
    now: datetime,
    expires_at: datetime,
    first_poll_at: datetime,
    safety_net_poll_at: datetime | None,
    waits_for_recheck: bool,
) -> SubmittedTask:
    """The item's submit `done`, its task (with its event when upstream answered at once: in
    the caller's transaction) and the item `submitted` with it; raises ItemNoLongerOurs, having
    written nothing, when the item is no longer this worker's. A pending task is one statement."""
    new = NewTask(
        client_id=item.client_id,
        task_id=task_id,
        masked=item.masked,
        metadata_json=item.metadata_json,
        now=now,
        expires_at=expires_at,
        first_poll_at=first_poll_at,
        safety_net_poll_at=safety_net_poll_at,
        result=result,
        request_id=request_id,
        recheck=item.recheck,
        waits_for_recheck=waits_for_recheck,
        number_digest=item.number_digest,
        job=(item.job_pk, item.job_id),
    )
    params = {**new.params(), "submit_id": item.id, "token": token}
    row = (await session.execute(_RECORD_TASK, params)).one_or_none()
    if row is None:
        raise ItemNoLongerOurs
    return await task_written(session, row, new)


async def end_item(
    session: AsyncSession,
    item: ClaimedItem,
    token: uuid.UUID,
    state: JobItemState,
    now: datetime,
) -> bool:
    """An item that made no task: `refused` (its submit `done`) or `unknown` (its submit too);
    its number erased either way."""
    submit_state = (
        ScheduledSubmitState.UNKNOWN if state is JobItemState.UNKNOWN else ScheduledSubmitState.DONE
    )
    row = (
        await session.execute(
            _END,
            {
                "id": item.id,
                "token": token,
                "submit_state": submit_state.value,
                "item_state": state.value,
                "now": now,
            },
        )
    ).one_or_none()
    return row is not None


async def end_lost_items(session: AsyncSession, now: datetime, limit: int) -> list[tuple[int, int]]:
    """Items whose worker died while submitting them (their lease passed `submitting`): their
    outcome is unknown and they are never submitted again. The (job_pk, line) of each."""
    result = await session.execute(_END_LOST, {"now": now, "limit": limit})
    return [(int(row.job_pk), int(row.line)) for row in result]


async def count_items_to_submit(session: AsyncSession) -> dict[str, int]:
    """Job items not submitted yet, every job's, by their submit's state: `waiting` (their job
    runs: the engine should be submitting them) and `standby` (a draft or paused job): a metric."""
    counts = dict.fromkeys(
        (ScheduledSubmitState.WAITING.value, ScheduledSubmitState.STANDBY.value), 0
    )
    counts.update({str(state): int(n) for state, n in await session.execute(_ITEMS_TO_SUBMIT)})
    return counts


def _claimed(row: Row[Any]) -> ClaimedItem:
    return ClaimedItem(
        id=int(row.id),
        client_id=int(row.client_id),
        job_pk=int(row.job_pk),
        job_id=str(row.job_id),
        line=int(row.job_line),
        phone_number_sealed=bytes(row.phone_number_sealed),
        lease_until=row.lease_until,
        recheck=None if row.recheck is None else RecheckPolicy.from_json(row.recheck),
        metadata_json="{}" if row.metadata is None else compact_json(row.metadata),
        masked=str(row.phone_number_masked),
        number_digest=bytes(row.number_digest),
    )


@dataclass(frozen=True, slots=True)
class SealedItemNumber:
    """A job item's sealed number as kept in its scheduled submit, with what it is bound to (its
    client, job's public id and line), for resealing it under a new key."""

    id: int
    client_id: int
    job_id: str
    line: int
    phone_number_sealed: bytes


_SEALED_ITEM_NUMBERS = text(
    f"""
    SELECT s.id, s.client_id, j.public_id AS job_id, s.job_line, s.phone_number_sealed
    FROM scheduled_submits AS s JOIN check_jobs AS j ON j.id = s.job_pk
    WHERE s.purpose = '{ScheduledSubmitPurpose.JOB_ITEM}' AND s.phone_number_sealed IS NOT NULL
      AND s.id > :after_id
    ORDER BY s.id
    LIMIT :limit
    """  # noqa: S608 - only enum values are interpolated
)


async def sealed_item_numbers_after(
    session: AsyncSession, after_id: int, limit: int
) -> list[SealedItemNumber]:
    """The job items' sealed numbers still kept (not yet submitted, whatever their job's state),
    in id order after `after_id`, at most `limit`. A resealed one is written with
    service/store/scheduled_submits.py's `replace_sealed_number`."""
    rows = await session.execute(_SEALED_ITEM_NUMBERS, {"after_id": after_id, "limit": limit})
    return [
        SealedItemNumber(
            id=int(row.id),
            client_id=int(row.client_id),
            job_id=str(row.job_id),
            line=int(row.job_line),
            phone_number_sealed=bytes(row.phone_number_sealed),
        )
        for row in rows
    ]
