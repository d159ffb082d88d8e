"""The store's facts behind the operations gauges: tasks by state, the due backlog and how late
its oldest task is, deliveries by state, the learnt completion times. Read by one scheduler every
few seconds (see service/observability/snapshot.py), never on an API request."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.schedule import DEFAULT_HALF_LIFE_S
from service.domain.states import DeliveryState, TaskState
from service.store.estimates import account_estimates
from service.store.job_items import count_items_to_submit

# The completion-time quantiles the operator's metrics show.
COMPLETION_QUANTILES = (0.5, 0.9, 0.95, 0.99)

STATEMENT_TIMEOUT_MS = 10_000

_TASKS_BY_STATE = text("SELECT state, count(*) FROM tasks GROUP BY state")

# Both served by the partial index ix_tasks_due (pending only, by next_poll_at).
_DUE_BACKLOG = text(
    f"""
    SELECT count(*), min(next_poll_at) FROM tasks
    WHERE state = '{TaskState.PENDING}' AND next_poll_at <= :now
    """  # noqa: S608 - only an enum value is interpolated
)

_DELIVERIES_BY_STATE = text("SELECT state, count(*) FROM deliveries GROUP BY state")

_DUE_DELIVERIES = text(
    f"""
    SELECT count(*), min(next_attempt_at) FROM deliveries
    WHERE state = '{DeliveryState.PENDING}' AND next_attempt_at <= :now
    """  # noqa: S608 - only an enum value is interpolated
)


# Enabled subscriptions in a run of failed attempts, longest first: the alert on one subscription's
# failures names it. Capped, so a mass outage of receivers cannot flood the scrape with series.
FAILING_SUBSCRIPTIONS_SHOWN = 50

_FAILING_SUBSCRIPTIONS = text(
    """
    SELECT public_id, failing_since FROM subscriptions
    WHERE enabled AND deleted_at IS NULL AND failing_since IS NOT NULL
    ORDER BY failing_since, id LIMIT :shown
    """
)


@dataclass(frozen=True)
class StoreStats:
    tasks_by_state: dict[str, int]
    due_tasks: int
    # now - the oldest due next_poll_at: how far behind polling runs (0 with nothing due).
    oldest_due_task_age_s: float
    deliveries_by_state: dict[str, int]
    due_deliveries: int
    oldest_due_delivery_age_s: float
    # The learnt completion times (every account's estimate): their decayed count, and the
    # ages by which given shares of answers arrived (keyed by the share, e.g. "0.95").
    completion_estimate_weight: float = 0.0
    completion_time_quantiles_s: dict[str, float] = field(default_factory=dict)
    # Subscription public id -> seconds since its run of failures began (the longest runs).
    failing_subscriptions_s: dict[str, float] = field(default_factory=dict)
    # Check job items not submitted yet, by state: waiting (their job runs), or on standby (a
    # draft or paused job).
    job_items_to_submit: dict[str, int] = field(default_factory=dict)


async def read_store_stats(
    session: AsyncSession, now: datetime, *, half_life_s: float = DEFAULT_HALF_LIFE_S
) -> StoreStats:
    """Exact counts. Counting finished tasks scans them, so the caller runs this once per
    interval for the whole fleet; the timeout keeps a huge table from holding a connection."""
    await session.execute(text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"))
    tasks = dict.fromkeys((state.value for state in TaskState), 0)
    tasks.update({str(s): int(n) for s, n in await session.execute(_TASKS_BY_STATE)})
    due_tasks, oldest_task = (await session.execute(_DUE_BACKLOG, {"now": now})).one()
    deliveries = dict.fromkeys((state.value for state in DeliveryState), 0)
    deliveries.update({str(s): int(n) for s, n in await session.execute(_DELIVERIES_BY_STATE)})
    due_deliveries, oldest_delivery = (await session.execute(_DUE_DELIVERIES, {"now": now})).one()
    estimate = await account_estimates(session, now, half_life_s)
    quantiles = (
        {str(q): estimate.quantile(q) for q in COMPLETION_QUANTILES} if estimate.total > 0 else {}
    )
    failing = await session.execute(_FAILING_SUBSCRIPTIONS, {"shown": FAILING_SUBSCRIPTIONS_SHOWN})
    return StoreStats(
        tasks_by_state=tasks,
        due_tasks=int(due_tasks),
        oldest_due_task_age_s=_age(now, oldest_task),
        deliveries_by_state=deliveries,
        due_deliveries=int(due_deliveries),
        oldest_due_delivery_age_s=_age(now, oldest_delivery),
        completion_estimate_weight=estimate.total,
        completion_time_quantiles_s=quantiles,
        failing_subscriptions_s={str(sid): _age(now, since) for sid, since in failing},
        job_items_to_submit=await count_items_to_submit(session),
    )


def _age(now: datetime, since: datetime | None) -> float:
    return 0.0 if since is None else max(0.0, (now - since).total_seconds())
