"""Leases at their production default (PHONEBRIDGE_LEASE_S unset: 10 s), renewed by heartbeats,
on a stack of its own (the shared one runs 3 s leases):

- a worker SIGKILLed while it holds polls and then webhook sends: every one of its tasks is
  polled again, and every one of its deliveries sent again, within 15 s of the kill;
- a live worker whose upstream answers take 12 s and whose receiver answers after 12 s (longer
  than the lease): no task is polled twice and no webhook sent twice, because the worker renews
  what it holds.

Upstream and webhook timeouts are the defaults' size (15 s) so the slow answers arrive.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.chaos.stack import Stack, running_stack
from tests.support.chaos.tenant import Planned, Tenant
from tests.support.receivers import Receiver, Reply, running_receiver
from tests.support.waiting import wait_until

RECOVERY_LIMIT_S = 15.0
TASKS = 20
HELD_S = 6.0  # how long the killed worker's calls and sends are kept waiting
SLOW_S = 12.0  # upstream and receiver answers of the live-worker part


@pytest.fixture(scope="module")
def default_lease_stack() -> Iterator[Stack]:
    settings = {"PHONEBRIDGE_UPSTREAM_TIMEOUT_S": "15", "PHONEBRIDGE_WEBHOOK_TIMEOUT_S": "15"}
    with running_stack(settings, defaults=frozenset({"PHONEBRIDGE_LEASE_S"})) as stack:
        yield stack


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


def calls_by_task(stack: Stack, since: float) -> dict[str, list[float]]:
    """Arrival times at the simulator of each task's calls since `since` (exclusive)."""
    calls: dict[str, list[float]] = {}
    for call in stack.sim.control.calls(since=since + 1e-6, endpoint="task_result"):
        calls.setdefault(call["task_id"], []).append(call["at"])
    return calls


def requests_by_event(receiver: Receiver, path: str) -> dict[str, list[float]]:
    arrivals: dict[str, list[float]] = {}
    for request in receiver.received(path):
        arrivals.setdefault(request.headers["webhook-id"], []).append(request.arrived)
    return arrivals


def test_default_lease_recovers_a_killed_workers_work_and_keeps_a_slow_workers(
    default_lease_stack: Stack, receiver: Receiver, chaos_report: dict[str, Any]
) -> None:
    stack = default_lease_stack
    assert "PHONEBRIDGE_LEASE_S" not in stack.env
    tenant = Tenant(stack, "chaos-default-lease")
    try:
        figures = _killed_worker(stack, tenant, receiver)
        figures |= _slow_live_worker(stack, tenant, receiver)
        tenant.count_upstream()
        tenant.check_tasks_and_events()
        tenant.check_no_server_errors()
        chaos_report["default_lease"] = {"outcome": "passed", **tenant.figures.as_dict(), **figures}
    finally:
        tenant.close()
        stack.sim.control.replace_faults()


def _killed_worker(stack: Stack, tenant: Tenant, receiver: Receiver) -> dict[str, float]:
    """All work on worker-1 (worker-2 stopped), held there by slow answers, then SIGKILL."""
    worker, other = stack.service("worker-1"), stack.service("worker-2")
    other.stop()
    path = "/killed"
    receiver.script(path, *[Reply(delay_s=HELD_S)] * TASKS)
    subscribed = tenant.http.post("/v1/subscriptions", json={"url": receiver.url(path)})
    assert subscribed.status_code == 201
    stack.sim.control.replace_faults(probabilities={"slow": 1.0}, slow_s=HELD_S)
    started = time.time()
    planned = [f"sim-ring-0-killed-{i}" for i in range(TASKS)]
    _register(tenant, planned)

    # Polls: once the worker's calls are under way at the simulator, the worker dies; every
    # task it held must reach upstream again within the limit.
    wait_until(lambda: len(calls_by_task(stack, started)) == TASKS, 30, "every first call")
    killed_at = time.time()
    worker.kill()
    worker.start()
    poll_recovery_s = _recovery_s(lambda: calls_by_task(stack, killed_at), killed_at, "poll")
    stack.sim.control.replace_faults()
    tenant.wait_until_final(timeout_s=60)

    # Webhooks: once the worker's first sends are being answered (slowly), it dies; every
    # delivery it held must reach the receiver again within the limit.
    wait_until(lambda: len(requests_by_event(receiver, path)) == TASKS, 30, "every first send")
    killed_at = time.monotonic()
    worker.kill()
    worker.start()
    delivery_recovery_s = _recovery_s(
        lambda: {
            event: [t for t in arrivals if t > killed_at]
            for event, arrivals in requests_by_event(receiver, path).items()
        },
        killed_at,
        "webhook",
    )
    other.start()

    assert poll_recovery_s <= RECOVERY_LIMIT_S, poll_recovery_s
    assert delivery_recovery_s <= RECOVERY_LIMIT_S, delivery_recovery_s
    return {
        "poll_recovery_after_sigkill_s": round(poll_recovery_s, 2),
        "delivery_recovery_after_sigkill_s": round(delivery_recovery_s, 2),
    }


def _slow_live_worker(stack: Stack, tenant: Tenant, receiver: Receiver) -> dict[str, float]:
    """Both workers live; upstream and the receiver each take 12 s, longer than a lease."""
    path = "/slow"
    receiver.script(path, default=Reply(delay_s=SLOW_S))
    subscribed = tenant.http.post(
        "/v1/subscriptions", json={"url": receiver.url(path), "event_types": ["task.completed"]}
    )
    assert subscribed.status_code == 201
    stack.sim.control.replace_faults(probabilities={"slow": 1.0}, slow_s=SLOW_S)
    started = time.time()
    planned = [f"sim-busy-0-slow-{i}" for i in range(TASKS)]
    _register(tenant, planned)
    tenant.wait_until_final(timeout_s=60)
    stack.sim.control.replace_faults()
    wait_until(
        lambda: len(requests_by_event(receiver, path)) >= TASKS,
        60,
        "every webhook of the slow part",
    )
    time.sleep(2.0)  # a second send, if there were one, would have had time to arrive
    calls = Counter({task_id: len(c) for task_id, c in calls_by_task(stack, started).items()})
    sends = Counter({event: len(a) for event, a in requests_by_event(receiver, path).items()})
    assert set(calls) == set(planned)
    assert max(calls.values()) == 1, calls.most_common(3)
    assert max(sends.values()) == 1, sends.most_common(3)
    return {
        "slow_part_upstream_calls": sum(calls.values()),
        "slow_part_webhooks": sum(sends.values()),
    }


def _recovery_s(
    arrivals_after_kill: Callable[[], dict[str, list[float]]], killed_at: float, what: str
) -> float:
    """Seconds from the kill until the last of the TASKS items arrived again."""

    def every_item_again() -> dict[str, list[float]] | None:
        arrivals = {item: times for item, times in arrivals_after_kill().items() if times}
        return arrivals if len(arrivals) == TASKS else None

    arrivals: dict[str, list[float]] = wait_until(
        every_item_again, RECOVERY_LIMIT_S + 15, f"every {what} again", interval_s=0.1
    )
    return max(min(times) for times in arrivals.values()) - killed_at


def _register(tenant: Tenant, task_ids: list[str]) -> None:
    response = tenant.http.post(
        "/v1/tasks/batch", json={"tasks": [{"task_id": t} for t in task_ids]}
    )
    assert response.status_code == 200
    assert {r["outcome"] for r in response.json()["results"]} == {"created"}
    for task_id in task_ids:
        tenant.planned[task_id] = _planned(task_id)
    tenant.figures.tasks += len(task_ids)


def _planned(task_id: str) -> Planned:
    status = task_id.split("-")[1]
    return Planned(task_id, "completed", status)
