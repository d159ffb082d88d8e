"""The metrics' recorders (service/observability/metrics.py): each counts under the label the
README's metrics table names."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY

from service.domain.delivery import Delivered, EndpointGone, GiveUp, RetryAt
from service.domain.states import DisabledReason, TaskState
from service.observability.metrics import (
    record_call_late_at_wire,
    record_call_slots,
    record_callback_trust,
    record_disabled_subscription,
    record_hint,
    record_job_item,
    record_submit,
    record_task_finished,
    record_tasks_registered,
    record_webhook_attempt,
    status_class,
    webhook_outcome,
)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_hint_counts_under_its_outcome() -> None:
    before = sample("phonebridge_hints_total", outcome="early")
    record_hint("early")
    assert sample("phonebridge_hints_total", outcome="early") == before + 1


def test_a_submit_and_a_trust_change_count_under_their_labels() -> None:
    submits = sample("phonebridge_submits_total", outcome="replayed")
    untrusted = sample("phonebridge_callback_trust_changes_total", to="untrusted")
    record_submit("replayed")
    record_callback_trust(trusted=False)
    assert sample("phonebridge_submits_total", outcome="replayed") == submits + 1
    assert sample("phonebridge_callback_trust_changes_total", to="untrusted") == untrusted + 1


@pytest.mark.parametrize(
    ("status", "label"), [(200, "2xx"), (302, "3xx"), (410, "4xx"), (503, "5xx"), (None, "none")]
)
def test_an_attempt_counts_under_its_status_class(status: int | None, label: str) -> None:
    before = sample("phonebridge_webhook_attempts_total", outcome="retrying", status_class=label)
    record_webhook_attempt("retrying", status, latency_ms=40)
    assert status_class(status) == label
    assert (
        sample("phonebridge_webhook_attempts_total", outcome="retrying", status_class=label)
        == before + 1
    )


def test_an_attempt_outcome_is_named_for_the_decision_after_it() -> None:
    at = datetime(2026, 12, 7, tzinfo=UTC)
    assert webhook_outcome(Delivered()) == "delivered"
    assert webhook_outcome(RetryAt(at, 5.0, "HTTP 500")) == "retrying"
    assert webhook_outcome(EndpointGone("HTTP 410")) == "endpoint_gone"
    assert webhook_outcome(GiveUp("HTTP 500")) == "failed"


def test_the_series_alerts_watch_exist_before_their_first_event() -> None:
    # A series that appears at 1 shows no increase in PromQL: the alert would miss the first one.
    for state in ("completed", "expired", "failed"):
        labels = {"state": state}
        assert REGISTRY.get_sample_value("phonebridge_tasks_finished_total", labels) is not None
    for reason in ("failing", "gone"):
        labels = {"reason": reason}
        assert (
            REGISTRY.get_sample_value("phonebridge_subscriptions_disabled_total", labels)
            is not None
        )


def test_a_task_counts_once_under_its_final_state_and_a_pending_one_not_at_all() -> None:
    expired = sample("phonebridge_tasks_finished_total", state="expired")
    pending = sample("phonebridge_tasks_finished_total", state="pending")
    record_task_finished(TaskState.EXPIRED)
    record_task_finished(TaskState.PENDING)
    assert sample("phonebridge_tasks_finished_total", state="expired") == expired + 1
    assert sample("phonebridge_tasks_finished_total", state="pending") == pending == 0


def test_call_slots_count_every_slot_taken() -> None:
    before = sample("phonebridge_upstream_call_slots_total")
    record_call_slots(7)
    record_call_slots(0)
    assert sample("phonebridge_upstream_call_slots_total") == before + 7


def test_a_call_late_at_the_wire_counts_once() -> None:
    before = sample("phonebridge_upstream_calls_late_at_wire_total")
    record_call_late_at_wire()
    assert sample("phonebridge_upstream_calls_late_at_wire_total") == before + 1


def test_a_disabled_subscription_counts_under_its_reason() -> None:
    before = sample("phonebridge_subscriptions_disabled_total", reason="gone")
    record_disabled_subscription(DisabledReason.GONE)
    assert sample("phonebridge_subscriptions_disabled_total", reason="gone") == before + 1


def test_new_registrations_count_and_none_is_no_count() -> None:
    before = sample("phonebridge_tasks_registered_total")
    record_tasks_registered(3)
    record_tasks_registered(0)
    assert sample("phonebridge_tasks_registered_total") == before + 3


def test_a_job_items_submit_counts_under_its_outcome() -> None:
    before = sample("phonebridge_job_items_total", outcome="refused")
    record_job_item("refused")
    assert sample("phonebridge_job_items_total", outcome="refused") == before + 1
