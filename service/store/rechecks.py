"""What a re-check does to its task, written with its scheduled submit's next state in one
transaction (service/store/scheduled_submits.py holds the queue itself).

A task with re-checks has one scheduled submit, from its check's submission until its last
possible re-check: `standby` while its current check has no answer, `waiting` once an answer
asks for a re-check, `submitting` during the call, and `done` (or `unknown`) with its number
erased once no re-check can follow: the task is final, cancelled, or had its last re-check.

Every statement that touches a task and its submit locks the task first (the cancel, the poll
write-back and the deadline sweep do too), so none can deadlock another; each write to a task is
guarded by its state (`pending`) and, during a re-submit, by the submit's lease token, so a cancel
or a deadline in between makes it change nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.answers import PhoneResult
from service.domain.rechecks import RECHECK_OUTCOME_UNKNOWN
from service.domain.states import ScheduledSubmitState, TaskState
from service.store.history import history_appended
from service.store.outbox import FinishedTask, record_events
from service.store.scheduled_submits import ClaimedSubmit

_PENDING = TaskState.PENDING
_STANDBY = ScheduledSubmitState.STANDBY
_WAITING = ScheduledSubmitState.WAITING
_SUBMITTING = ScheduledSubmitState.SUBMITTING
_DONE = ScheduledSubmitState.DONE
_UNKNOWN = ScheduledSubmitState.UNKNOWN

# The submits of tasks that reached a final state (or were cancelled): no re-check is left to
# make, the numbers are erased. One whose call was in flight keeps the truth: `unknown`.
END_SUBMITS_SET = f"""
    state = CASE WHEN state = '{_SUBMITTING}' THEN '{_UNKNOWN}' ELSE '{_DONE}' END,
    phone_number_sealed = NULL, lease_token = NULL, lease_until = NULL
"""
END_SUBMITS_WHERE = f"state IN ('{_STANDBY}', '{_WAITING}', '{_SUBMITTING}')"

_END_SUBMITS = text(
    f"""
    UPDATE scheduled_submits SET {END_SUBMITS_SET}, updated_at = :now
    WHERE task_pk = ANY(CAST(:task_pks AS bigint[])) AND {END_SUBMITS_WHERE}
    """  # noqa: S608 - only constants are interpolated
)

_SCHEDULE = text(
    f"""
    UPDATE scheduled_submits AS s SET state = '{_WAITING}', due_at = v.due_at, updated_at = :now
    FROM jsonb_to_recordset(CAST(:due AS jsonb)) AS v(task_pk bigint, due_at timestamptz)
    WHERE s.task_pk = v.task_pk AND s.state = '{_STANDBY}'
    """  # noqa: S608 - only enum values are interpolated
)

# The answer the task has, as an entry of `rechecks` once a re-check replaces it.
_EARLIER_ANSWER = """
    jsonb_build_array(jsonb_build_object(
        'task_id', COALESCE(t.upstream_task_id, t.task_id),
        'phone_status', t.result ->> 'phone_status',
        'at', COALESCE(t.answered_at, CAST(:now AS timestamptz))))
"""

# The re-submit itself in the task's story (history.py); nothing when no call was made.
_SUBMIT_ENTRY = """jsonb_build_object(
    'at', CAST(:now AS timestamptz), 'call', 'submit', 'code', CAST(:code AS text),
    'task_id', CAST(:upstream_task_id AS text), 'request_id', CAST(:request_id AS text))"""
_SUBMIT_IN_HISTORY = f"""
    poll_history = CASE WHEN CAST(:code AS text) IS NULL THEN t.poll_history
                        ELSE {history_appended("t.poll_history", _SUBMIT_ENTRY)} END
"""

_FINAL_RETURNING = (
    "RETURNING t.id, t.client_id, t.task_id, t.state, row_to_json(t)::text AS row_json"
)


def _resubmitted(row_set: str, task_set: str, returning: str = "RETURNING t.id") -> str:
    """A re-submit's answer: the task (leased with the submit) locked first, the submit's next
    state, then the task's; nothing when either is no longer this worker's."""
    return f"""
    WITH task AS (
        SELECT id FROM tasks
        WHERE id = :task_pk AND state = '{_PENDING}' AND lease_token = :token
        FOR UPDATE
    ),
    marked AS (
        UPDATE scheduled_submits
        SET {row_set}, lease_token = NULL, lease_until = NULL, updated_at = :now
        WHERE id = :id AND task_pk = (SELECT id FROM task) AND lease_token = :token
          AND state = '{_SUBMITTING}'
        RETURNING task_pk
    )
    UPDATE tasks AS t SET {task_set}, lease_token = NULL, lease_until = NULL, updated_at = :now
    WHERE t.id = (SELECT task_pk FROM marked)
    {returning}
    """  # noqa: S608 - only constants are interpolated


# The answer moves into `rechecks`; the new upstream check is polled, from its own submission.
_SUBMITTED = text(
    _resubmitted(
        f"""state = CASE WHEN CAST(:keep AS boolean) THEN '{_STANDBY}' ELSE '{_DONE}' END,
            phone_number_sealed = CASE WHEN CAST(:keep AS boolean) THEN phone_number_sealed END,
            due_at = NULL""",
        f"""rechecks = t.rechecks || {_EARLIER_ANSWER},
            result = NULL, answered_at = NULL,
            upstream_task_id = CAST(:upstream_task_id AS text), upstream_submitted_at = :now,
            earlier_polls = t.poll_count, last_pending_at = NULL, finish_p = NULL,
            expects_callback = false,
            next_poll_at = :next_poll_at, expires_at = :expires_at,
            upstream_request_id = COALESCE(CAST(:request_id AS text), t.upstream_request_id),
            {_SUBMIT_IN_HISTORY}""",
    )
)

_ANSWERED_AGAIN = text(
    _resubmitted(
        f"state = '{_WAITING}', due_at = :recheck_at",
        f"""rechecks = t.rechecks || {_EARLIER_ANSWER},
            result = CAST(:result AS jsonb), answered_at = :now,
            upstream_task_id = CAST(:upstream_task_id AS text), upstream_submitted_at = :now,
            earlier_polls = t.poll_count, last_pending_at = NULL, finish_p = NULL,
            expects_callback = false, next_poll_at = NULL, expires_at = :expires_at,
            upstream_request_id = COALESCE(CAST(:request_id AS text), t.upstream_request_id),
            {_SUBMIT_IN_HISTORY}""",
    )
)

_ANSWERED_LAST = text(
    _resubmitted(
        f"state = '{_DONE}', phone_number_sealed = NULL",
        f"""rechecks = t.rechecks || {_EARLIER_ANSWER},
            result = CAST(:result AS jsonb), answered_at = :now,
            upstream_task_id = CAST(:upstream_task_id AS text), upstream_submitted_at = :now,
            earlier_polls = t.poll_count, expects_callback = false,
            state = '{TaskState.COMPLETED}', completed_at = :now, next_poll_at = NULL,
            upstream_request_id = COALESCE(CAST(:request_id AS text), t.upstream_request_id),
            {_SUBMIT_IN_HISTORY}""",
        _FINAL_RETURNING,
    )
)

# The re-check is not made: the task ends with the answer it has (a task waiting for a re-check
# always has one), and says why.
_GIVEN_UP = text(
    _resubmitted(
        "state = CAST(:row_state AS text), phone_number_sealed = NULL",
        f"""state = CASE WHEN t.result IS NULL THEN '{TaskState.EXPIRED}'
                         ELSE '{TaskState.COMPLETED}' END,
            completed_at = :now, next_poll_at = NULL, last_error = CAST(:last_error AS jsonb),
            upstream_request_id = COALESCE(CAST(:request_id AS text), t.upstream_request_id),
            {_SUBMIT_IN_HISTORY}""",
        _FINAL_RETURNING,
    )
)

# Submits whose worker died between marking them and recording the answer: unknown, the number
# erased, never submitted again; their tasks end with the answer they have. Tasks first.
_END_LOST = text(
    f"""
    WITH lost AS (
        SELECT id, task_pk FROM scheduled_submits
        WHERE state = '{_SUBMITTING}' AND lease_until < :now
        ORDER BY lease_until
        LIMIT :limit
    ),
    task AS (
        SELECT id FROM tasks WHERE id IN (SELECT task_pk FROM lost) ORDER BY id FOR UPDATE
    ),
    marked AS (
        UPDATE scheduled_submits
        SET state = '{_UNKNOWN}', phone_number_sealed = NULL, lease_token = NULL,
            lease_until = NULL, updated_at = :now
        WHERE id IN (SELECT id FROM lost) AND task_pk IN (SELECT id FROM task)
          AND state = '{_SUBMITTING}' AND lease_until < :now
        RETURNING task_pk
    )
    UPDATE tasks AS t SET
        state = CASE WHEN t.result IS NULL THEN '{TaskState.EXPIRED}'
                     ELSE '{TaskState.COMPLETED}' END,
        completed_at = :now, next_poll_at = NULL, last_error = CAST(:last_error AS jsonb),
        lease_token = NULL, lease_until = NULL, updated_at = :now
    WHERE t.id IN (SELECT task_pk FROM marked) AND t.state = '{_PENDING}'
    {_FINAL_RETURNING}
    """  # noqa: S608 - only constants are interpolated
)


async def end_scheduled_submits(
    session: AsyncSession, task_pks: Sequence[int], now: datetime
) -> None:
    """No re-check is left for these tasks (they are final): their numbers are erased."""
    if task_pks:
        await session.execute(_END_SUBMITS, {"task_pks": sorted(task_pks), "now": now})


async def schedule_rechecks(
    session: AsyncSession, due: Sequence[tuple[int, datetime]], now: datetime
) -> None:
    """Make the standby submits of these tasks (task pk, due_at) due: their answer asks for a
    re-check."""
    if due:
        rows = [{"task_pk": task_pk, "due_at": at.isoformat()} for task_pk, at in sorted(due)]
        await session.execute(_SCHEDULE, {"due": orjson.dumps(rows).decode(), "now": now})


async def record_recheck_submitted(
    session: AsyncSession,
    submit: ClaimedSubmit,
    token: uuid.UUID,
    *,
    upstream_task_id: str,
    request_id: str | None,
    code: str,
    next_poll_at: datetime,
    expires_at: datetime,
    keep_number: bool,
    now: datetime,
) -> bool:
    """Upstream took the re-check: the task polls `upstream_task_id` from `next_poll_at`, its
    answer before moves into `rechecks`; the number is kept only when another re-check may
    follow. False when the submit or its task is no longer this worker's."""
    result = await session.execute(
        _SUBMITTED,
        {
            **_ids(submit, token, now),
            "keep": keep_number,
            "upstream_task_id": upstream_task_id,
            "request_id": request_id,
            "code": code,
            "next_poll_at": next_poll_at,
            "expires_at": expires_at,
        },
    )
    return result.one_or_none() is not None


@dataclass(frozen=True)
class InstantAnswer:
    """A re-check upstream answered at once: the task's new answer, under a task_id phonebridge
    made (`instant-...`)."""

    upstream_task_id: str
    result: PhoneResult
    request_id: str | None
    code: str


async def record_recheck_answered_again(
    session: AsyncSession,
    submit: ClaimedSubmit,
    token: uuid.UUID,
    answer: InstantAnswer,
    *,
    recheck_at: datetime,
    expires_at: datetime,
    now: datetime,
) -> bool:
    """Upstream answered the re-check at once, and that answer asks for one more: the task keeps
    it and waits until `expires_at`, the re-check is due at `recheck_at`, the number kept. False
    when the submit or its task is no longer this worker's."""
    params = _answer_params(submit, token, answer, now)
    result = await session.execute(
        _ANSWERED_AGAIN, {**params, "recheck_at": recheck_at, "expires_at": expires_at}
    )
    return result.one_or_none() is not None


async def record_recheck_last_answer(
    session: AsyncSession,
    submit: ClaimedSubmit,
    token: uuid.UUID,
    answer: InstantAnswer,
    *,
    now: datetime,
) -> FinishedTask | None:
    """Upstream answered the re-check at once, and that is the task's last answer: the task
    completes with it and its event, the number is erased. None when the submit or its task is
    no longer this worker's."""
    row = (
        await session.execute(_ANSWERED_LAST, _answer_params(submit, token, answer, now))
    ).one_or_none()
    finished = _finished(row)
    await _record_event(session, finished, now)
    return finished


def _answer_params(
    submit: ClaimedSubmit, token: uuid.UUID, answer: InstantAnswer, now: datetime
) -> dict[str, Any]:
    return {
        **_ids(submit, token, now),
        "upstream_task_id": answer.upstream_task_id,
        "result": orjson.dumps(answer.result.as_json()).decode(),
        "request_id": answer.request_id,
        "code": answer.code,
    }


async def end_with_last_answer(
    session: AsyncSession,
    submit: ClaimedSubmit,
    token: uuid.UUID,
    *,
    last_error: dict[str, Any],
    request_id: str | None,
    code: str | None,
    outcome_unknown: bool,
    now: datetime,
) -> FinishedTask | None:
    """The re-check was not made (refused, or its outcome is unknown): the task completes with
    the answer it has and `last_error`, with its event; the number is erased. `code`: upstream's
    answer to the call, for the task's story (None: no call was made)."""
    row = (
        await session.execute(
            _GIVEN_UP,
            {
                **_ids(submit, token, now),
                "row_state": _UNKNOWN if outcome_unknown else _DONE,
                "last_error": orjson.dumps(last_error).decode(),
                "request_id": request_id,
                "code": code,
                "upstream_task_id": None,
            },
        )
    ).one_or_none()
    finished = _finished(row)
    await _record_event(session, finished, now)
    return finished


async def end_lost_rechecks(session: AsyncSession, now: datetime, limit: int) -> list[FinishedTask]:
    """Declare unknown up to `limit` re-checks whose worker died while submitting (their lease
    passed): never submitted again, their numbers erased, their tasks completed with the answer
    they have and SUBMIT_OUTCOME_UNKNOWN in `last_error`, with their events."""
    last_error = {
        "code": RECHECK_OUTCOME_UNKNOWN,
        "message": "the re-check may have reached upstream but its answer was not recorded; it "
        "is not submitted again, and the answer before it is the last",
        "at": now.isoformat(),
    }
    result = await session.execute(
        _END_LOST, {"now": now, "limit": limit, "last_error": orjson.dumps(last_error).decode()}
    )
    finished = [task for row in result if (task := _finished(row)) is not None]
    await record_events(session, finished, now)
    return finished


def _ids(submit: ClaimedSubmit, token: uuid.UUID, now: datetime) -> dict[str, Any]:
    return {"id": submit.id, "task_pk": submit.task_pk, "token": token, "now": now}


def _finished(row: Row[Any] | None) -> FinishedTask | None:
    if row is None:
        return None
    return FinishedTask.from_returned_row(row)


async def _record_event(session: AsyncSession, task: FinishedTask | None, now: datetime) -> None:
    if task is not None:
        await record_events(session, [task], now)
