"""The deliveries of a client's events as the client reaches them: read with their attempts
(GET /v1/events/{id}/deliveries), redelivered, a subscription's failed ones recovered, and the
events a disabled subscription missed sent. Each put back is pending and due now with a fresh
schedule, for the engine's claim (service/store/deliveries.py). Time is always a parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.public_ids import DELIVERY_PREFIX, public_id_sql
from service.domain.states import DeliveryState

# Spelt into the SQL below.
_PENDING = DeliveryState.PENDING
_FAILED = DeliveryState.FAILED

_EVENT_OF_CLIENT = text(
    "SELECT id FROM events WHERE client_id = :client_id AND public_id = :event_id"
)

_EVENT_DELIVERIES = text(
    """
    SELECT d.id AS pk, d.public_id AS id, s.public_id AS subscription_id, d.state,
           d.attempt_count, d.last_attempt_at, d.next_attempt_at, d.last_response_status,
           d.last_error
    FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id
    WHERE d.event_id = :event_pk
    ORDER BY d.id
    """
)

_ATTEMPTS_OF = text(
    """
    SELECT delivery_id, at, response_status, latency_ms, error, response_excerpt
    FROM delivery_attempts WHERE delivery_id = ANY(CAST(:ids AS bigint[]))
    ORDER BY delivery_id, at, id
    """
)

# Redeliver: back to pending, due now, with a fresh schedule; attempt_count keeps counting.
# Deliveries to a disabled or deleted subscription stay as they are.
_REDELIVER = text(
    f"""
    UPDATE deliveries AS d SET state = '{_PENDING}', next_attempt_at = :now, schedule_attempt = 0,
        turn_at = NULL, finished_at = NULL, lease_token = NULL, lease_until = NULL
    FROM subscriptions s
    WHERE d.event_id = :event_pk AND s.id = d.subscription_id
      AND s.enabled AND s.deleted_at IS NULL
      AND (CAST(:subscription_id AS text) IS NULL OR s.public_id = :subscription_id)
    RETURNING d.public_id
    """  # noqa: S608 - only enum values are interpolated
)

_RECOVER = text(
    f"""
    UPDATE deliveries SET state = '{_PENDING}', next_attempt_at = :now, schedule_attempt = 0,
        turn_at = NULL, finished_at = NULL, lease_token = NULL, lease_until = NULL
    WHERE subscription_id = :subscription_pk AND state = '{_FAILED}'
      AND finished_at >= :since AND (CAST(:until AS timestamptz) IS NULL OR finished_at < :until)
    RETURNING id
    """  # noqa: S608 - only enum values are interpolated
)

# The events of the window that the subscription takes but was never sent (it was disabled
# then), one new delivery each, due now; events from before it existed were never its, and its
# own `subscription.disabled` event is about it, not for it. An event it already has a delivery
# of (sent, pending or failed) gets none: nothing is sent twice this way.
_SEND_MISSED = text(
    f"""
    INSERT INTO deliveries (public_id, event_id, subscription_id, client_id, state,
                            next_attempt_at, created_at)
    SELECT {public_id_sql(DELIVERY_PREFIX)}, e.id, s.id, e.client_id, '{_PENDING}', :now, :now
    FROM subscriptions s
    JOIN events e ON e.client_id = s.client_id
    WHERE s.id = :subscription_pk AND s.enabled AND s.deleted_at IS NULL
      AND e.created_at >= GREATEST(CAST(:since AS timestamptz), s.created_at)
      AND (CAST(:until AS timestamptz) IS NULL OR e.created_at < :until)
      AND e.type = ANY(s.event_types)
      AND e.subscription_pk IS DISTINCT FROM s.id
      AND NOT EXISTS (
          SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.subscription_id = s.id
      )
    ORDER BY e.id
    ON CONFLICT (event_id, subscription_id) DO NOTHING
    RETURNING id
    """  # noqa: S608 - only constants are interpolated
)


@dataclass(frozen=True, slots=True)
class AttemptView:
    """One attempt of a delivery as GET /v1/events/{id}/deliveries shows it."""

    at: datetime
    response_status: int | None
    latency_ms: int | None
    error: str | None
    response_excerpt: str | None


@dataclass(frozen=True, slots=True)
class DeliveryView:
    """A delivery as GET /v1/events/{id}/deliveries shows it, fields in the contract's order: the
    API renders it with orjson, which writes a dataclass as an object of its fields. Its published
    schema, DeliveryOut in service/api/deliveries.py, must match (the schema conformance test
    checks every answer against it)."""

    id: str
    subscription_id: str
    state: DeliveryState
    attempt_count: int
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    last_response_status: int | None
    last_error: str | None
    attempts: list[AttemptView]


async def find_event_pk(session: AsyncSession, client_id: int, event_id: str) -> int | None:
    row = (
        await session.execute(_EVENT_OF_CLIENT, {"client_id": client_id, "event_id": event_id})
    ).one_or_none()
    return None if row is None else int(row[0])


async def list_event_deliveries(session: AsyncSession, event_pk: int) -> list[DeliveryView]:
    """The deliveries of an event as the API shows them, each with its attempts."""
    rows = (await session.execute(_EVENT_DELIVERIES, {"event_pk": event_pk})).all()
    if not rows:
        return []
    attempts: dict[int, list[AttemptView]] = {row.pk: [] for row in rows}
    for attempt in await session.execute(_ATTEMPTS_OF, {"ids": list(attempts)}):
        attempts[attempt.delivery_id].append(
            AttemptView(
                at=attempt.at,
                response_status=attempt.response_status,
                latency_ms=attempt.latency_ms,
                error=attempt.error,
                response_excerpt=attempt.response_excerpt,
            )
        )
    return [
        DeliveryView(
            id=row.id,
            subscription_id=row.subscription_id,
            state=DeliveryState(row.state),
            attempt_count=row.attempt_count,
            last_attempt_at=row.last_attempt_at,
            next_attempt_at=row.next_attempt_at,
            last_response_status=row.last_response_status,
            last_error=row.last_error,
            attempts=attempts[row.pk],
        )
        for row in rows
    ]


async def redeliver_event(
    session: AsyncSession, event_pk: int, subscription_id: str | None, now: datetime
) -> list[str]:
    """Send an event's deliveries (or the one to `subscription_id`) again, due now, with a
    fresh schedule; returns the public ids of those put back."""
    result = await session.execute(
        _REDELIVER, {"event_pk": event_pk, "subscription_id": subscription_id, "now": now}
    )
    return [str(row[0]) for row in result]


async def recover_failed(
    session: AsyncSession,
    subscription_pk: int,
    since: datetime,
    until: datetime | None,
    now: datetime,
) -> int:
    """Put every delivery of a subscription that ended `failed` in [since, until) back to
    pending, due now, with a fresh schedule; returns how many."""
    result = await session.execute(
        _RECOVER,
        {"subscription_pk": subscription_pk, "since": since, "until": until, "now": now},
    )
    return len(result.all())


async def send_missed_events(
    session: AsyncSession,
    subscription_pk: int,
    since: datetime,
    until: datetime | None,
    now: datetime,
) -> int:
    """A delivery, due now, of every event created in [since, until) that the (enabled)
    subscription takes and has none of; returns how many."""
    result = await session.execute(
        _SEND_MISSED,
        {"subscription_pk": subscription_pk, "since": since, "until": until, "now": now},
    )
    return len(result.all())
