"""What /metrics writes out of what it read at scrape time (service/observability/scrape.py):
a Redis that did not answer shows as `phonebridge_redis_up 0` and nothing it would have told,
the limiter's gauges follow the ceiling and the factor, the pause carries its reason, and the
store gauges come only with a snapshot, whose age is never negative. The reading itself, against
a real Redis (up and down), is tests/integration/observability/test_metrics.py's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families

from service.observability.scrape import OperationsState, render_metrics
from service.store.stats import StoreStats
from service.upstream.pause import PauseState
from service.upstream.ratelimit import SAFETY_FACTOR, LimiterStatus

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
# What the scrape reads, as opposed to the process's own registry that follows it.
OPERATIONS_GAUGES = {
    "phonebridge_redis_up",
    "phonebridge_upstream_rate_ceiling_rps",
    "phonebridge_upstream_rate_factor",
    "phonebridge_upstream_effective_rps",
    "phonebridge_upstream_blocked_seconds",
    "phonebridge_upstream_paused",
    "phonebridge_store_snapshot_age_seconds",
    "phonebridge_tasks",
    "phonebridge_due_tasks",
    "phonebridge_oldest_due_task_age_seconds",
    "phonebridge_deliveries",
    "phonebridge_due_deliveries",
    "phonebridge_oldest_due_delivery_age_seconds",
    "phonebridge_completion_estimate_completions",
    "phonebridge_completion_time_seconds",
    "phonebridge_subscription_failing_seconds",
}


def samples(state: OperationsState) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(render_metrics(state).decode())
        for sample in family.samples
    }


def names(found: Samples) -> set[str]:
    return {name for name, _ in found}


def store(**overrides: object) -> StoreStats:
    values: dict[str, object] = {
        "tasks_by_state": {"pending": 3, "completed": 5},
        "due_tasks": 2,
        "oldest_due_task_age_s": 1.5,
        "deliveries_by_state": {"pending": 1, "delivered": 4},
        "due_deliveries": 1,
        "oldest_due_delivery_age_s": 0.25,
        "completion_estimate_weight": 12.5,
        "completion_time_quantiles_s": {"0.5": 15.0, "0.95": 46.0},
    }
    return StoreStats(**(values | overrides))  # type: ignore[arg-type]


def test_redis_down_shows_only_that_redis_did_not_answer() -> None:
    found = samples(OperationsState(NOW, max_rps=50, redis_up=False))

    assert found[("phonebridge_redis_up", frozenset())] == 0
    assert names(found) & OPERATIONS_GAUGES == {"phonebridge_redis_up"}


def test_the_limiter_gauges_follow_the_ceiling_and_the_factor() -> None:
    limiter = LimiterStatus(blocked_for_s=2.5, factor=0.5)
    found = samples(OperationsState(NOW, max_rps=40, redis_up=True, limiter=limiter))

    assert found[("phonebridge_redis_up", frozenset())] == 1
    assert found[("phonebridge_upstream_rate_ceiling_rps", frozenset())] == 40
    assert found[("phonebridge_upstream_rate_factor", frozenset())] == 0.5
    assert found[("phonebridge_upstream_effective_rps", frozenset())] == 40 * SAFETY_FACTOR * 0.5
    assert found[("phonebridge_upstream_blocked_seconds", frozenset())] == 2.5
    # No pause open: the gauge is there, at 0, with an empty reason.
    assert found[("phonebridge_upstream_paused", frozenset({("reason", "")}))] == 0


def test_an_open_pause_is_one_with_its_reason() -> None:
    state = OperationsState(
        NOW,
        max_rps=40,
        redis_up=True,
        limiter=LimiterStatus(blocked_for_s=0.0, factor=1.0),
        pause=PauseState(reason="KEY_EXPIRED", since=NOW - timedelta(minutes=3)),
    )
    paused = {
        labels: value
        for (name, labels), value in samples(state).items()
        if name == "phonebridge_upstream_paused"
    }

    assert paused == {frozenset({("reason", "KEY_EXPIRED")}): 1}


def test_store_gauges_come_with_a_snapshot_and_its_age() -> None:
    state = OperationsState(
        NOW,
        max_rps=40,
        redis_up=True,
        limiter=LimiterStatus(blocked_for_s=0.0, factor=1.0),
        snapshot_at=NOW - timedelta(seconds=4),
        store=store(),
    )
    found = samples(state)

    assert found[("phonebridge_store_snapshot_age_seconds", frozenset())] == 4
    assert found[("phonebridge_tasks", frozenset({("state", "pending")}))] == 3
    assert found[("phonebridge_tasks", frozenset({("state", "completed")}))] == 5
    assert found[("phonebridge_due_tasks", frozenset())] == 2
    assert found[("phonebridge_oldest_due_task_age_seconds", frozenset())] == 1.5
    assert found[("phonebridge_deliveries", frozenset({("state", "delivered")}))] == 4
    assert found[("phonebridge_due_deliveries", frozenset())] == 1
    assert found[("phonebridge_oldest_due_delivery_age_seconds", frozenset())] == 0.25
    assert found[("phonebridge_completion_estimate_completions", frozenset())] == 12.5
    quantile = "phonebridge_completion_time_seconds"
    assert found[(quantile, frozenset({("quantile", "0.5")}))] == 15.0
    assert found[(quantile, frozenset({("quantile", "0.95")}))] == 46.0


def test_without_a_snapshot_there_are_no_store_gauges() -> None:
    state = OperationsState(
        NOW, max_rps=40, redis_up=True, limiter=LimiterStatus(blocked_for_s=0.0, factor=1.0)
    )

    assert names(samples(state)) & OPERATIONS_GAUGES == {
        "phonebridge_redis_up",
        "phonebridge_upstream_rate_ceiling_rps",
        "phonebridge_upstream_rate_factor",
        "phonebridge_upstream_effective_rps",
        "phonebridge_upstream_blocked_seconds",
        "phonebridge_upstream_paused",
    }


def test_a_snapshot_stamped_after_the_scrape_is_zero_seconds_old() -> None:
    # Another machine's clock may run ahead: the age is clamped, never negative.
    state = OperationsState(
        NOW, max_rps=40, redis_up=True, snapshot_at=NOW + timedelta(seconds=2), store=store()
    )

    assert samples(state)[("phonebridge_store_snapshot_age_seconds", frozenset())] == 0


def test_the_processs_own_metrics_follow_the_operations_gauges() -> None:
    text = render_metrics(OperationsState(NOW, max_rps=40, redis_up=False)).decode()

    assert text.index("phonebridge_redis_up") < text.index("python_info")


def test_the_database_gauge_says_whether_postgres_answered_when_it_was_asked() -> None:
    up = samples(OperationsState(NOW, max_rps=40, redis_up=True, database_up=True))
    down = samples(OperationsState(NOW, max_rps=40, redis_up=True, database_up=False))
    unasked = samples(OperationsState(NOW, max_rps=40, redis_up=True))

    assert up[("phonebridge_database_up", frozenset())] == 1
    assert down[("phonebridge_database_up", frozenset())] == 0
    assert "phonebridge_database_up" not in names(unasked)


def test_each_failing_subscription_shows_how_long_it_has_failed() -> None:
    failing = {"sub_a": 3600.0, "sub_b": 12.5}
    state = OperationsState(
        NOW,
        max_rps=40,
        redis_up=True,
        snapshot_at=NOW,
        store=store(failing_subscriptions_s=failing),
    )
    shown = {
        dict(labels)["subscription"]: value
        for (name, labels), value in samples(state).items()
        if name == "phonebridge_subscription_failing_seconds"
    }

    assert shown == failing
