"""Submitted checks: the intent row written before upstream is called, the answer recorded after,
and the task a submitted check becomes (with its event when upstream finished at once).

The write order is the point. `begin_submission` commits a `submitting` row (with the client's
Idempotency-Key, if any) before the call; `record_submitted_task` and `finish_submission` then
write the task, its event and the answer in one transaction. A process killed in between leaves
the row `submitting`: once its lease has passed, `mark_unknown` turns it into the answer
SUBMIT_OUTCOME_UNKNOWN, and nothing ever submits it again.

`text()` through a session (service/store/__init__.py): the task insert shares its transaction
with the outbox (outbox.py) and consumes an early hint in the same statement.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.answers import PhoneResult
from service.domain.rechecks import RecheckPolicy
from service.domain.states import SubmissionState, TaskSource, TaskState
from service.store.outbox import FinishedTask, record_events


@dataclass(frozen=True)
class Submission:
    """One `POST /v1/checks` as stored."""

    id: int
    client_id: int
    idempotency_key: str | None
    fingerprint: bytes
    state: SubmissionState
    lease_until: datetime
    response_status: int | None
    # The answer's JSON text exactly as it was sent (never re-encoded: see SubmitAnswer).
    response_body: str | None


_SUBMISSION_COLUMNS = (
    "id, client_id, idempotency_key, fingerprint, state, lease_until, response_status, "
    "response_body"
)

_BEGIN = text(
    f"""
    INSERT INTO check_submissions
        (client_id, idempotency_key, fingerprint, state, phone_number_masked, created_at,
         lease_until)
    VALUES (:client_id, :key, :fingerprint, '{SubmissionState.SUBMITTING}', :masked, :now,
            :lease_until)
    ON CONFLICT (client_id, idempotency_key) DO NOTHING
    RETURNING {_SUBMISSION_COLUMNS}
    """  # noqa: S608 - only constants are interpolated
)

_FIND = text(
    f"""
    SELECT {_SUBMISSION_COLUMNS} FROM check_submissions
    WHERE client_id = :client_id AND idempotency_key = :key
    """  # noqa: S608 - only constants are interpolated
)

_FINISH = text(
    f"""
    UPDATE check_submissions
    SET state = :state, answered_at = :now, response_status = :status,
        response_body = :body, task_pk = :task_pk
    WHERE id = :id AND state <> '{SubmissionState.ANSWERED}'
    RETURNING id
    """  # noqa: S608 - only constants are interpolated
)

# Only a row whose owner's lease has passed: a request still waiting for upstream keeps its own.
_MARK_UNKNOWN = text(
    f"""
    UPDATE check_submissions
    SET state = '{SubmissionState.UNKNOWN}', answered_at = :now, response_status = :status,
        response_body = :body
    WHERE id = :id AND state = '{SubmissionState.SUBMITTING}' AND lease_until <= :now
    RETURNING {_SUBMISSION_COLUMNS}
    """  # noqa: S608 - only constants are interpolated
)

_RELEASE = text(
    f"""
    DELETE FROM check_submissions WHERE id = :id AND state = '{SubmissionState.SUBMITTING}'
    """  # noqa: S608 - only constants are interpolated
)


# A callback that arrived before this insert (an early hint) makes the first poll come at once,
# and is used up. A task_id this client already has (upstream would not reuse one) is left as it
# is and read back instead.
def submitted_task_ctes(only_if: str = "true") -> str:
    """The task insert of a submitted check, as the CTEs `hint`, `inserted` and `task` (the task
    written or found: id, client_id, task_id, state, row_json and created), with NewTask's
    parameters; each part only when `only_if` (SQL) holds: a statement that writes the task only
    if something else of it is still so (service/store/job_items.py: its item's submit still
    ours) is then one statement."""
    return f"""
    hint AS (
        DELETE FROM early_hints
        WHERE client_id = :client_id AND task_id = :task_id AND expires_at > :now AND {only_if}
        RETURNING 1
    ),
    inserted AS (
        INSERT INTO tasks (client_id, task_id, state, source, phone_number_masked, metadata,
                           result, submitted_at, registered_at, expires_at, completed_at,
                           next_poll_at, poll_count, upstream_request_id, updated_at,
                           expects_callback, recheck, answered_at, traceparent, number_digest,
                           job_pk, job_id)
        SELECT :client_id, :task_id, CAST(:state AS text), '{TaskSource.SUBMITTED}',
               :masked, CAST(:metadata AS jsonb), CAST(:result AS jsonb), :now, :now,
               :expires_at, :completed_at,
               CASE WHEN CAST(:state AS text) <> '{TaskState.PENDING}' THEN NULL
                    WHEN CAST(:result AS jsonb) IS NOT NULL THEN NULL
                    WHEN EXISTS (SELECT 1 FROM hint) THEN CAST(:now AS timestamptz)
                    WHEN CAST(:expects_callback AS boolean) AND COALESCE(
                        (SELECT trusted FROM callback_records WHERE client_id = :client_id),
                        true)
                    THEN :safety_net_poll_at
                    ELSE :next_poll_at END,
               0, :request_id, :now, :expects_callback, CAST(:recheck AS jsonb),
               CASE WHEN CAST(:result AS jsonb) IS NOT NULL THEN CAST(:now AS timestamptz) END,
               :traceparent, :number_digest, :job_pk, :job_id
        WHERE {only_if}
        ON CONFLICT (client_id, task_id) DO NOTHING
        RETURNING id, client_id, task_id, state, row_to_json(tasks)::text AS row_json
    ),
    task AS (
        SELECT id, client_id, task_id, state, row_json, true AS created FROM inserted
        UNION ALL
        SELECT id, client_id, task_id, state, row_to_json(tasks)::text, false FROM tasks
        WHERE client_id = :client_id AND task_id = :task_id
          AND NOT EXISTS (SELECT 1 FROM inserted) AND {only_if}
    )"""  # noqa: S608 - only constants are interpolated


_INSERT_TASK = text(f"WITH {submitted_task_ctes()} SELECT * FROM task")  # noqa: S608 - constants


@dataclass(frozen=True)
class NewTask:
    """The task of a submitted check, to be written (`record_submitted_task`): pending and due at
    `first_poll_at`, or, when its check carried a callback (`safety_net_poll_at` given) that the
    client's record trusts (service/domain/callback_trust.py), at `safety_net_poll_at`; at once
    after an early hint. Or completed with `result` and its event (same transaction: the
    outbox); or, when that result asks for a re-check (`waits_for_recheck`), pending with it and
    no poll planned. The request's `traceparent` (traces on) goes on the task, and so on its
    event when it is final at once. `number_digest`: the number's keyed digest (what `max_age_s`
    finds it by); `job`: the row id and public id of the check job whose item it is."""

    client_id: int
    task_id: str
    masked: str
    metadata_json: str
    now: datetime
    expires_at: datetime
    first_poll_at: datetime
    result: PhoneResult | None
    request_id: str | None
    safety_net_poll_at: datetime | None = None
    recheck: RecheckPolicy | None = None
    waits_for_recheck: bool = False
    traceparent: str | None = None
    number_digest: bytes | None = None
    job: tuple[int, str] | None = None

    @property
    def completed(self) -> bool:
        """Final at once: its event is written with it."""
        return self.result is not None and not self.waits_for_recheck

    def params(self) -> dict[str, Any]:
        """The parameters of `submitted_task_ctes`."""
        completed = self.completed
        return {
            "client_id": self.client_id,
            "task_id": self.task_id,
            "state": TaskState.COMPLETED if completed else TaskState.PENDING,
            "masked": self.masked,
            "metadata": self.metadata_json,
            "result": orjson.dumps(self.result.as_json()).decode() if self.result else None,
            "now": self.now,
            "expires_at": self.expires_at,
            "completed_at": self.now if completed else None,
            "next_poll_at": self.first_poll_at,
            "safety_net_poll_at": self.safety_net_poll_at,
            "expects_callback": self.safety_net_poll_at is not None,
            "request_id": self.request_id,
            "recheck": None
            if self.recheck is None
            else orjson.dumps(self.recheck.as_json()).decode(),
            "traceparent": self.traceparent,
            "number_digest": self.number_digest,
            "job_pk": None if self.job is None else self.job[0],
            "job_id": None if self.job is None else self.job[1],
        }


@dataclass(frozen=True)
class SubmittedTask:
    """The task a submitted check became, as the contract shows it (`body`)."""

    id: int
    task_id: str
    state: TaskState
    # The task as TaskOut renders it (JSON text, as in its event).
    body_json: str
    created: bool


async def begin_submission(
    session: AsyncSession,
    *,
    client_id: int,
    idempotency_key: str | None,
    fingerprint: bytes,
    masked: str,
    now: datetime,
    lease_until: datetime,
) -> tuple[Submission, bool]:
    """Write the intent row; returns it and True, or the row already holding that
    Idempotency-Key and False."""
    params = {
        "client_id": client_id,
        "key": idempotency_key,
        "fingerprint": fingerprint,
        "masked": masked,
        "now": now,
        "lease_until": lease_until,
    }
    while True:
        created = (await session.execute(_BEGIN, params)).one_or_none()
        if created is not None:
            return _submission(created), True
        assert idempotency_key is not None  # NULL keys never conflict
        existing = await find_submission(session, client_id, idempotency_key)
        # The conflicting row can only vanish when its request released it; try again.
        if existing is not None:
            return existing, False


async def find_submission(
    session: AsyncSession, client_id: int, idempotency_key: str
) -> Submission | None:
    row = (
        await session.execute(_FIND, {"client_id": client_id, "key": idempotency_key})
    ).one_or_none()
    return None if row is None else _submission(row)


async def finish_submission(
    session: AsyncSession,
    submission_id: int,
    *,
    state: SubmissionState,
    status: int,
    body_json: str,
    task_pk: int | None,
    now: datetime,
) -> bool:
    """Record the answer of a submission this request owns. A row another request already
    declared unknown (its lease passed first) takes the real answer too: a task_id upstream
    returned is never dropped."""
    result = await session.execute(
        _FINISH,
        {
            "id": submission_id,
            "state": state,
            "status": status,
            "body": body_json,
            "task_pk": task_pk,
            "now": now,
        },
    )
    return result.one_or_none() is not None


async def mark_unknown(
    session: AsyncSession, submission_id: int, *, status: int, body_json: str, now: datetime
) -> Submission | None:
    """Declare a submission whose lease passed without an answer unknown, with the answer every
    later retry gets; None when it is not (or no longer) such a row."""
    row = (
        await session.execute(
            _MARK_UNKNOWN,
            {
                "id": submission_id,
                "status": status,
                "body": body_json,
                "now": now,
            },
        )
    ).one_or_none()
    return None if row is None else _submission(row)


async def release_submission(session: AsyncSession, submission_id: int) -> None:
    """Forget a submission that surely never reached upstream: the key may be used again."""
    await session.execute(_RELEASE, {"id": submission_id})


async def record_submitted_task(session: AsyncSession, new: NewTask) -> SubmittedTask:
    """Insert the task of a submitted check (see NewTask), with its event when it is final."""
    row = (await session.execute(_INSERT_TASK, new.params())).one()
    return await task_written(session, row, new)


async def task_written(session: AsyncSession, row: Row[Any], new: NewTask) -> SubmittedTask:
    """The task `submitted_task_ctes` returned (`row`), its event written when it was created
    final: in the insert's transaction."""
    finished = FinishedTask.from_returned_row(row)
    if row.created and new.completed:
        await record_events(session, [finished], new.now)
    return SubmittedTask(
        id=finished.id,
        task_id=finished.task_id,
        state=finished.state,
        body_json=finished.data,
        created=bool(row.created),
    )


def _submission(row: Row[Any]) -> Submission:
    return Submission(
        id=int(row.id),
        client_id=int(row.client_id),
        idempotency_key=row.idempotency_key,
        fingerprint=bytes(row.fingerprint),
        state=SubmissionState(row.state),
        lease_until=row.lease_until,
        response_status=row.response_status,
        response_body=row.response_body,
    )


# The Idempotency-Key's promise lasts 24 hours; an early hint, its task's validity. Both are
# purged in small batches by the retention step (indexes on created_at and expires_at).
IDEMPOTENCY_WINDOW = timedelta(hours=24)

_PURGE_SUBMISSIONS = text(
    """
    DELETE FROM check_submissions WHERE id IN (
        SELECT id FROM check_submissions WHERE created_at < :cutoff
        ORDER BY created_at LIMIT :limit FOR UPDATE SKIP LOCKED
    )
    """
)

_PURGE_EARLY_HINTS = text(
    """
    DELETE FROM early_hints WHERE (client_id, task_id) IN (
        SELECT client_id, task_id FROM early_hints WHERE expires_at < :now
        ORDER BY expires_at LIMIT :limit FOR UPDATE SKIP LOCKED
    )
    """
)


async def purge_check_records(session: AsyncSession, now: datetime, limit: int) -> int:
    """Delete up to `limit` submissions past the Idempotency-Key window and up to `limit`
    expired early hints; returns how many rows went."""
    submissions = await session.execute(
        _PURGE_SUBMISSIONS, {"cutoff": now - IDEMPOTENCY_WINDOW, "limit": limit}
    )
    hints = await session.execute(_PURGE_EARLY_HINTS, {"now": now, "limit": limit})
    return int(submissions.rowcount) + int(hints.rowcount)  # type: ignore[attr-defined]
