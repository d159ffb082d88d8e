"""How each subscription's endpoint is doing: its run of failures (locked, read and written by
the attempts' write-back, service/webhooks/write_back.py; the rules are
service/domain/endpoint_health.py's) and its health over a window of attempts (the REST route and
the portal's page)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.endpoint_health import FailureRun

_LOCK_RUNS = text(
    """
    SELECT id, last_success_at, failing_since, failures_in_row, schedule_exhausted
    FROM subscriptions WHERE id = ANY(CAST(:pks AS bigint[]))
    ORDER BY id
    FOR NO KEY UPDATE
    """
)

_SAVE_RUNS = text(
    """
    UPDATE subscriptions AS s SET
        last_success_at = i.last_success_at, failing_since = i.failing_since,
        failures_in_row = i.failures_in_row, schedule_exhausted = i.schedule_exhausted
    FROM unnest(CAST(:pks AS bigint[]), CAST(:last_success_ats AS timestamptz[]),
                CAST(:failing_sinces AS timestamptz[]), CAST(:failures AS integer[]),
                CAST(:exhausted AS boolean[]))
        AS i(id, last_success_at, failing_since, failures_in_row, schedule_exhausted)
    WHERE s.id = i.id
    """
)


async def lock_failure_runs(
    session: AsyncSession, subscription_pks: Sequence[int]
) -> dict[int, FailureRun]:
    """The runs of failures of these subscriptions, their rows locked until the transaction
    ends (in id order, as every writer of several subscriptions locks them, so two never wait
    for each other). The attempts' write-back takes them first, before it writes deliveries,
    as the client's disable does (subscription, then its deliveries)."""
    if not subscription_pks:
        return {}
    result = await session.execute(_LOCK_RUNS, {"pks": sorted(set(subscription_pks))})
    return {
        int(row.id): FailureRun(
            last_success_at=row.last_success_at,
            failing_since=row.failing_since,
            failures_in_row=row.failures_in_row,
            schedule_exhausted=row.schedule_exhausted,
        )
        for row in result
    }


async def save_failure_runs(session: AsyncSession, runs: Mapping[int, FailureRun]) -> None:
    """Write these subscriptions' runs of failures (their rows locked by `lock_failure_runs`)."""
    if not runs:
        return
    pks = sorted(runs)
    await session.execute(
        _SAVE_RUNS,
        {
            "pks": pks,
            "last_success_ats": [runs[pk].last_success_at for pk in pks],
            "failing_sinces": [runs[pk].failing_since for pk in pks],
            "failures": [runs[pk].failures_in_row for pk in pks],
            "exhausted": [runs[pk].schedule_exhausted for pk in pks],
        },
    )


@dataclass(frozen=True, slots=True)
class SubscriptionHealth:
    """How a subscription's endpoint is doing: its run of failures, and its attempts of the last
    hour (at most HEALTH_ROW_CAP of the newest)."""

    subscription_id: str
    last_success_at: datetime | None
    failing_since: datetime | None
    failures_in_row: int
    attempts: int
    succeeded: int
    p95_latency_ms: float | None

    @property
    def success_rate(self) -> float | None:
        return None if self.attempts == 0 else self.succeeded / self.attempts


# A health reads at most this many of the newest attempts of its window (as the portal's charts
# do): one index range, a bounded sort, whatever the endpoint's volume.
HEALTH_ROW_CAP = 50_000

_HEALTH = text(
    f"""
    SELECT s.public_id, s.last_success_at, s.failing_since, s.failures_in_row,
           h.attempts, h.succeeded, h.p95_latency_ms
    FROM subscriptions s
    CROSS JOIN LATERAL (
        SELECT count(*) AS attempts,
               count(*) FILTER (WHERE response_status BETWEEN 200 AND 299) AS succeeded,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95_latency_ms
        FROM (
            SELECT response_status, latency_ms FROM delivery_attempts
            WHERE subscription_id = s.id AND at >= :since
            ORDER BY at DESC
            LIMIT {HEALTH_ROW_CAP}
        ) AS recent
    ) AS h
    WHERE s.client_id = :client_id AND s.id = ANY(CAST(:pks AS bigint[]))
    """  # noqa: S608 - only a constant is interpolated
)


async def subscription_health(
    session: AsyncSession, client_id: int, subscription_pks: Sequence[int], since: datetime
) -> dict[str, SubscriptionHealth]:
    """The health of each of these subscriptions of the client, by id; attempts from `since`."""
    if not subscription_pks:
        return {}
    result = await session.execute(
        _HEALTH, {"client_id": client_id, "pks": list(subscription_pks), "since": since}
    )
    return {
        row.public_id: SubscriptionHealth(
            subscription_id=row.public_id,
            last_success_at=row.last_success_at,
            failing_since=row.failing_since,
            failures_in_row=row.failures_in_row,
            attempts=row.attempts,
            succeeded=row.succeeded,
            p95_latency_ms=row.p95_latency_ms,
        )
        for row in result
    }
