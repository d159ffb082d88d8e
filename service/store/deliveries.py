"""Every query of webhook delivery as the engine runs it: claim due deliveries, read a leased
batch, write attempts back, wait for a turn of the subscription's pace, and stop. (An event's
deliveries as a client reads, redelivers and recovers them: service/store/event_deliveries.py.)

Claiming follows the polling engine's pattern: one statement sets a lease on due rows (FOR UPDATE
SKIP LOCKED), and every later write is guarded by `lease_token = :token AND state = 'pending'`, so
a late or duplicated message, or a stop in between, makes the write change nothing. Time is always
a parameter.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.states import DeliveryState, EventType
from service.store.events import data_json_with_verdict, lacks_verdict_sql
from service.store.leases import claim_due

# Spelt into the SQL below (the partial index ix_deliveries_due wants the literal).
_PENDING = DeliveryState.PENDING
_FAILED = DeliveryState.FAILED

_CLAIM_DUE = text(
    f"""
    UPDATE deliveries SET lease_token = :token, lease_until = :lease_until
    WHERE id IN (
        SELECT id FROM deliveries
        WHERE state = '{_PENDING}' AND next_attempt_at <= :now
          AND (lease_until IS NULL OR lease_until < :now)
        ORDER BY next_attempt_at
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    RETURNING id
    """  # noqa: S608 - only enum values are interpolated
)

_LEASED_SUBSCRIPTIONS = text(
    f"""
    SELECT d.id, d.subscription_id AS subscription_pk, d.turn_at, s.pace_epoch,
           -- A disabled or deleted subscription's delivery is stopped, not paced.
           CASE WHEN s.enabled AND s.deleted_at IS NULL THEN s.max_rps END AS max_rps
    FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id
    WHERE d.id = ANY(CAST(:ids AS bigint[])) AND d.lease_token = :token AND d.state = '{_PENDING}'
      AND d.lease_until > :now
    ORDER BY d.id
    """  # noqa: S608 - only enum values are interpolated
)

# A hint this shortly before a task's completion is taken as what made phonebridge look: the
# detection lag (a metric) then counts from the hint, else from the answer itself.
HINT_CAUSE_WINDOW_S = 60

# The event's data comes as JSON text: it goes into the webhook body as it is (only an event
# written before results carried a verdict is read and written again, to add it).
_LOAD_LEASED = text(
    f"""
    SELECT d.id, d.schedule_attempt,
           e.public_id AS event_id, e.type AS event_type, e.created_at AS event_created_at,
           e.data::text AS event_data_json, {lacks_verdict_sql("e")} AS event_lacks_verdict,
           s.id AS subscription_pk, s.public_id AS subscription_id, s.url,
           s.enabled AND s.deleted_at IS NULL AS subscription_active,
           s.secret_encrypted,
           CASE WHEN s.previous_secret_expires_at > :now THEN s.previous_secret_encrypted END
               AS previous_secret_encrypted,
           CASE WHEN t.last_hint_at <= t.completed_at
                 AND t.last_hint_at > t.completed_at - interval '{HINT_CAUSE_WINDOW_S} seconds'
                THEN t.last_hint_at ELSE t.completed_at END AS answer_known_at,
           COALESCE(e.traceparent, t.traceparent) AS traceparent
    FROM deliveries d
    JOIN events e ON e.id = d.event_id
    JOIN subscriptions s ON s.id = d.subscription_id
    LEFT JOIN tasks t ON t.id = e.task_pk
    WHERE d.id = ANY(CAST(:ids AS bigint[])) AND d.lease_token = :token AND d.state = '{_PENDING}'
      AND d.lease_until > :now
    ORDER BY d.id
    """  # noqa: S608 - only enum values are interpolated
)

# One statement per write-back, for attempts of any number of batches: the deliveries (each
# guarded by its own batch's lease token), then an attempt row for each one really updated.
_RECORD_ATTEMPTS = text(
    f"""
    WITH input AS (
        SELECT * FROM unnest(
            CAST(:ids AS bigint[]), CAST(:tokens AS uuid[]), CAST(:states AS text[]),
            CAST(:next_attempt_ats AS timestamptz[]), CAST(:ats AS timestamptz[]),
            CAST(:statuses AS integer[]), CAST(:latencies AS integer[]),
            CAST(:errors AS text[]), CAST(:excerpts AS text[])
        ) AS i(id, token, state, next_attempt_at, at, status, latency_ms, error, excerpt)
    ),
    updated AS (
        UPDATE deliveries AS d SET
            state = i.state,
            attempt_count = d.attempt_count + 1,
            schedule_attempt = d.schedule_attempt + 1,
            next_attempt_at = i.next_attempt_at,
            turn_at = NULL,
            last_attempt_at = i.at,
            last_response_status = i.status,
            last_error = i.error,
            finished_at = CASE WHEN i.state = '{_PENDING}' THEN NULL ELSE :now END,
            lease_token = NULL,
            lease_until = NULL
        FROM input i
        WHERE d.id = i.id AND d.lease_token = i.token AND d.state = '{_PENDING}'
        RETURNING d.id, d.subscription_id
    )
    INSERT INTO delivery_attempts (delivery_id, subscription_id, at, response_status, latency_ms,
                                   error, response_excerpt)
    SELECT i.id, u.subscription_id, i.at, i.status, i.latency_ms, i.error, i.excerpt
    FROM input i JOIN updated u ON u.id = i.id
    ORDER BY i.id
    RETURNING delivery_id
    """  # noqa: S608 - only enum values are interpolated
)

_STOP_LEASED = text(
    f"""
    UPDATE deliveries SET state = '{_FAILED}', finished_at = :now, next_attempt_at = NULL,
        last_error = :reason, lease_token = NULL, lease_until = NULL
    WHERE id = ANY(CAST(:ids AS bigint[])) AND lease_token = :token AND state = '{_PENDING}'
    """  # noqa: S608 - only enum values are interpolated
)

# Handed back unattempted; a turn it held is given up (it takes a new one when it comes back).
_POSTPONE_LEASED = text(
    f"""
    UPDATE deliveries SET next_attempt_at = :at, turn_at = NULL, lease_token = NULL,
        lease_until = NULL
    WHERE id = ANY(CAST(:ids AS bigint[])) AND lease_token = :token AND state = '{_PENDING}'
    """  # noqa: S608 - only enum values are interpolated
)

# Handed back unattempted to wait in its row for a turn of its subscription's pace.
_WAIT_IN_ROWS = text(
    f"""
    UPDATE deliveries AS d SET turn_at = i.turn_at, next_attempt_at = i.due_at,
        lease_token = NULL, lease_until = NULL
    FROM unnest(CAST(:ids AS bigint[]), CAST(:turn_ats AS timestamptz[]),
                CAST(:due_ats AS timestamptz[])) AS i(id, turn_at, due_at)
    WHERE d.id = i.id AND d.lease_token = :token AND d.state = '{_PENDING}'
    """  # noqa: S608 - only enum values are interpolated
)

# A subscription's pace changed: the deliveries waiting in their rows for a turn of the old
# timeline are due now, to take turns of the new one. (Those a worker holds keep theirs: at most
# HOLD_S more of the old pace.) Pending deliveries have no finished_at, hence the index.
_CLEAR_WAITING_TURNS = text(
    f"""
    UPDATE deliveries SET turn_at = NULL, next_attempt_at = :now
    WHERE subscription_id = :subscription_pk AND finished_at IS NULL AND state = '{_PENDING}'
      AND turn_at IS NOT NULL AND (lease_until IS NULL OR lease_until < :now)
    """  # noqa: S608 - only enum values are interpolated
)

_STOP_SUBSCRIPTION_DELIVERIES = text(
    f"""
    UPDATE deliveries SET state = '{_FAILED}', finished_at = :now, next_attempt_at = NULL,
        last_error = :reason, lease_token = NULL, lease_until = NULL
    WHERE subscription_id = :subscription_pk AND state = '{_PENDING}'
    """  # noqa: S608 - only enum values are interpolated
)


@dataclass(frozen=True, slots=True)
class LeasedPace:
    """A leased delivery's subscription and what pacing it needs: the subscription's max_rps
    (None: no pace) and the epoch of its timeline, and the turn the delivery holds, if any."""

    subscription_pk: int
    max_rps: int | None = None
    pace_epoch: int = 0
    turn_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class LeasedDelivery:
    """A delivery this process holds the lease of, with what sending it needs: its event, and its
    subscription's endpoint and secrets (encrypted; the previous one only while it still signs)."""

    id: int
    schedule_attempt: int
    event_id: str
    event_type: EventType
    event_created_at: datetime
    # The event's data as JSON text: it goes into the webhook body as it is.
    event_data_json: str
    subscription_pk: int
    subscription_id: str
    url: str
    subscription_active: bool
    secret_encrypted: bytes
    previous_secret_encrypted: bytes | None
    # When phonebridge learnt the answer may be ready: the hint that made the task due, else the
    # answer's arrival (None once the task is purged).
    answer_known_at: datetime | None = None
    # The span its attempts are children of (traces on): the poll that brought its event, else
    # the task's registration.
    traceparent: str | None = None


@dataclass(frozen=True)
class AttemptWrite:
    """One finished attempt and the delivery's state after it."""

    delivery_id: int
    lease_token: uuid.UUID
    state: DeliveryState  # pending: retry at next_attempt_at
    next_attempt_at: datetime | None
    at: datetime
    response_status: int | None
    latency_ms: int
    error: str | None
    response_excerpt: str | None


async def claim_due_deliveries(
    session: AsyncSession, now: datetime, lease_s: float, limit: int
) -> tuple[uuid.UUID, list[int]]:
    """Lease up to `limit` due deliveries, oldest due first; returns the token and their ids."""
    return await claim_due(session, _CLAIM_DUE, now, lease_s, limit)


async def leased_subscriptions(
    session: AsyncSession, ids: Sequence[int], token: uuid.UUID, now: datetime
) -> dict[int, LeasedPace]:
    """The deliveries of `ids` still leased to `token`, each with its subscription's row id and
    pace."""
    result = await session.execute(
        _LEASED_SUBSCRIPTIONS, {"ids": list(ids), "token": token, "now": now}
    )
    return {
        int(row.id): LeasedPace(
            subscription_pk=int(row.subscription_pk),
            max_rps=row.max_rps,
            pace_epoch=row.pace_epoch,
            turn_at=row.turn_at,
        )
        for row in result
    }


async def load_leased_deliveries(
    session: AsyncSession, ids: Sequence[int], token: uuid.UUID, now: datetime
) -> list[LeasedDelivery]:
    """The deliveries of `ids` still leased to `token`, with their event and subscription."""
    result = await session.execute(_LOAD_LEASED, {"ids": list(ids), "token": token, "now": now})
    return [
        LeasedDelivery(
            id=row.id,
            schedule_attempt=row.schedule_attempt,
            event_id=row.event_id,
            event_type=EventType(row.event_type),
            event_created_at=row.event_created_at,
            event_data_json=data_json_with_verdict(row.event_data_json, row.event_lacks_verdict),
            subscription_pk=row.subscription_pk,
            subscription_id=row.subscription_id,
            url=row.url,
            subscription_active=row.subscription_active,
            secret_encrypted=row.secret_encrypted,
            previous_secret_encrypted=row.previous_secret_encrypted,
            answer_known_at=row.answer_known_at,
            traceparent=row.traceparent,
        )
        for row in result
    ]


async def record_attempts(
    session: AsyncSession, attempts: Sequence[AttemptWrite], now: datetime
) -> set[int]:
    """Write finished attempts back; returns the ids whose lease was still the attempt's (the
    others' attempts changed nothing)."""
    if not attempts:
        return set()
    ordered = sorted(attempts, key=lambda a: a.delivery_id)
    result = await session.execute(
        _RECORD_ATTEMPTS,
        {
            "ids": [a.delivery_id for a in ordered],
            "tokens": [a.lease_token for a in ordered],
            "states": [a.state for a in ordered],
            "next_attempt_ats": [a.next_attempt_at for a in ordered],
            "ats": [a.at for a in ordered],
            "statuses": [a.response_status for a in ordered],
            "latencies": [a.latency_ms for a in ordered],
            "errors": [a.error for a in ordered],
            "excerpts": [a.response_excerpt for a in ordered],
            "now": now,
        },
    )
    return {int(row[0]) for row in result}


async def stop_leased(
    session: AsyncSession, ids: Sequence[int], token: uuid.UUID, reason: str, now: datetime
) -> None:
    """End leased deliveries as failed without an attempt (their subscription went away)."""
    if ids:
        await session.execute(
            _STOP_LEASED, {"ids": list(ids), "token": token, "reason": reason, "now": now}
        )


async def postpone_leased(
    session: AsyncSession, ids: Sequence[int], token: uuid.UUID, at: datetime
) -> None:
    """Give leased deliveries back unattempted, due again at `at`."""
    if ids:
        await session.execute(_POSTPONE_LEASED, {"ids": list(ids), "token": token, "at": at})


async def wait_in_rows(
    session: AsyncSession, turns: Sequence[tuple[int, datetime, datetime]], token: uuid.UUID
) -> None:
    """Give leased deliveries back unattempted, each (id, turn_at, due_at) holding its turn of
    its subscription's pace and due again at `due_at`."""
    if not turns:
        return
    await session.execute(
        _WAIT_IN_ROWS,
        {
            "ids": [row_id for row_id, _, _ in turns],
            "turn_ats": [turn_at for _, turn_at, _ in turns],
            "due_ats": [due_at for _, _, due_at in turns],
            "token": token,
        },
    )


async def clear_waiting_turns(session: AsyncSession, subscription_pk: int, now: datetime) -> None:
    """The subscription's pace changed: its deliveries waiting in their rows for a turn are due
    now, to take a turn of the new pace."""
    await session.execute(_CLEAR_WAITING_TURNS, {"subscription_pk": subscription_pk, "now": now})


async def stop_subscription_deliveries(
    session: AsyncSession, subscription_pk: int, reason: str, now: datetime
) -> None:
    """End every pending delivery of a subscription as failed (disabled or deleted)."""
    await session.execute(
        _STOP_SUBSCRIPTION_DELIVERIES,
        {"subscription_pk": subscription_pk, "reason": reason, "now": now},
    )
