"""What the API's GET /metrics reads at scrape time and how it is written out.

At scrape time: the store snapshot (one Redis GET, see snapshot.py), the shared rate limiter's
state and the global pause (a few Redis calls). The database is asked nothing but whether it
answers (the API's SELECT 1, as /readyz asks it): nothing is counted there. Then the API
process's own registry (process and Python runtime metrics) follows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.asyncio import Redis

from service.observability.snapshot import read_snapshot
from service.store.stats import StoreStats
from service.upstream.pause import PauseState, read_pause
from service.upstream.ratelimit import SAFETY_FACTOR, LimiterStatus, UpstreamRateLimiter

REDIS_READ_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class OperationsState:
    now: datetime
    max_rps: float
    redis_up: bool
    limiter: LimiterStatus | None = None
    pause: PauseState | None = None
    snapshot_at: datetime | None = None
    store: StoreStats | None = None
    # Whether the API's own SELECT 1 (the one /readyz makes) answered; None: not asked.
    database_up: bool | None = None


async def read_operations_state(
    redis: Redis[Any], max_rps: float, now: datetime
) -> OperationsState:
    limiter = UpstreamRateLimiter(redis, max_rps)
    try:
        async with asyncio.timeout(REDIS_READ_TIMEOUT_S):
            status = await limiter.status()
            pause = await read_pause(redis)
            snapshot = await read_snapshot(redis)
    except Exception:  # Redis down: the scrape still answers, and says so
        return OperationsState(now, max_rps, redis_up=False)
    at, store = snapshot if snapshot is not None else (None, None)
    return OperationsState(now, max_rps, True, status, pause, at, store)


class _OperationsCollector(Collector):
    def __init__(self, state: OperationsState) -> None:
        self._state = state

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = self._state
        yield _gauge("phonebridge_redis_up", "1 when Redis answered this scrape.", state.redis_up)
        if state.database_up is not None:
            yield _gauge(
                "phonebridge_database_up",
                "1 when PostgreSQL answered this scrape's SELECT 1 (the check /readyz makes).",
                state.database_up,
            )
        if state.limiter is not None:
            yield from _limiter_gauges(state.max_rps, state.limiter)
            yield _pause_gauge(state.pause)
        if state.store is not None and state.snapshot_at is not None:
            age = max(0.0, (state.now - state.snapshot_at).total_seconds())
            yield _gauge(
                "phonebridge_store_snapshot_age_seconds",
                "Age of the store snapshot behind the task and delivery gauges.",
                age,
            )
            yield from _store_gauges(state.store)


def render_metrics(state: OperationsState) -> bytes:
    """The Prometheus text exposition: the operations gauges, then this process's registry."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_OperationsCollector(state))
    return generate_latest(registry) + generate_latest(REGISTRY)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=float(value))


def _labelled(
    name: str, documentation: str, label: str, values: Mapping[str, float]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], float(value))
    return family


def _limiter_gauges(max_rps: float, status: LimiterStatus) -> Iterator[GaugeMetricFamily]:
    yield _gauge(
        "phonebridge_upstream_rate_ceiling_rps",
        "PHONEBRIDGE_UPSTREAM_MAX_RPS: the configured ceiling on upstream calls per second.",
        max_rps,
    )
    yield _gauge(
        "phonebridge_upstream_rate_factor",
        "The adaptive factor of the shared rate (1 = full; lowered by RATE_LIMIT_EXCEEDED).",
        status.factor,
    )
    yield _gauge(
        "phonebridge_upstream_effective_rps",
        "The shared call rate the limiter allows now, across every worker.",
        max_rps * SAFETY_FACTOR * status.factor,
    )
    yield _gauge(
        "phonebridge_upstream_blocked_seconds",
        "Seconds until a Retry-After from upstream lets calls start again (0 = not blocked).",
        status.blocked_for_s,
    )


def _pause_gauge(pause: PauseState | None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "phonebridge_upstream_paused",
        "1 while polling is paused by an account problem upstream, with its reason.",
        labels=["reason"],
    )
    if pause is None:
        family.add_metric([""], 0.0)
    else:
        family.add_metric([pause.reason], 1.0)
    return family


def _store_gauges(store: StoreStats) -> Iterator[GaugeMetricFamily]:
    yield _labelled(
        "phonebridge_tasks", "Tasks in the store, by state.", "state", store.tasks_by_state
    )
    yield _gauge(
        "phonebridge_due_tasks",
        "Pending tasks whose next_poll_at has passed: the polling backlog.",
        store.due_tasks,
    )
    yield _gauge(
        "phonebridge_oldest_due_task_age_seconds",
        "How long the oldest due task has waited past its next_poll_at (scheduling delay).",
        store.oldest_due_task_age_s,
    )
    yield _labelled(
        "phonebridge_deliveries",
        "Webhook deliveries in the store, by state.",
        "state",
        store.deliveries_by_state,
    )
    yield _gauge(
        "phonebridge_due_deliveries",
        "Pending deliveries whose next attempt is due: the webhook backlog.",
        store.due_deliveries,
    )
    yield _gauge(
        "phonebridge_oldest_due_delivery_age_seconds",
        "How long the oldest due delivery has waited past its next_attempt_at.",
        store.oldest_due_delivery_age_s,
    )
    yield _gauge(
        "phonebridge_completion_estimate_completions",
        "Completions the learnt completion-time estimate rests on (decayed by its half-life).",
        store.completion_estimate_weight,
    )
    yield _labelled(
        "phonebridge_subscription_failing_seconds",
        "Enabled subscriptions whose every attempt has failed lately: seconds since the run of "
        "failures began (the longest 50 runs; phonebridge disables one after "
        "PHONEBRIDGE_WEBHOOK_DISABLE_AFTER_S).",
        "subscription",
        store.failing_subscriptions_s,
    )
    yield _labelled(
        "phonebridge_completion_time_seconds",
        "Learnt age (after submitted_at) by which a share of upstream answers arrives.",
        "quantile",
        store.completion_time_quantiles_s,
    )
    yield _labelled(
        "phonebridge_job_items_to_submit",
        "Check job items not submitted yet: waiting (their job runs) or standby (a draft or "
        "paused job).",
        "state",
        store.job_items_to_submit,
    )
