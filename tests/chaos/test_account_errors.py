"""Upstream answers KEY_EXPIRED to every call for a while (an expired key, renewed by someone):
polling pauses for everyone, /readyz says why while staying 200, only probes reach upstream,
no task fails for it, and polling resumes by itself once the key works again."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.support.chaos.stack import STACK_SETTINGS, Stack
from tests.support.chaos.tenant import Tenant, plan_tasks
from tests.support.receivers import flaky_receiver
from tests.support.waiting import wait_until

TASKS = 500
KEY_EXPIRED_FOR_S = 8.0


def upstream_state(stack: Stack) -> dict[str, Any]:
    response = httpx.get(f"{stack.api_url}/readyz", timeout=5.0)
    assert response.status_code == 200, response.text  # a pause alone keeps it ready
    state: dict[str, Any] = response.json()["upstream"]
    return state


def test_key_expired_pauses_polling_fails_no_task_and_resumes(stack: Stack, tenant: Tenant) -> None:
    with flaky_receiver(failure_rate=0.0, seed=7) as receiver:
        tenant.subscribe(receiver)
        tenant.submit(plan_tasks("key", TASKS, pending_calls=3, pending_s=3))
        wait_until(lambda: len(tenant.events()) >= 10, 30, "the first events")

        stack.sim.control.force("key_expired", for_s=KEY_EXPIRED_FOR_S)
        started = time.time()
        wait_until(lambda: upstream_state(stack)["paused"], 10, "polling to pause")
        assert upstream_state(stack)["reason"] == "KEY_EXPIRED"
        failed_before = sum(1 for t in tenant.tasks().values() if t["state"] == "failed")
        wait_until(lambda: not upstream_state(stack)["paused"], KEY_EXPIRED_FOR_S + 10, "resume")
        resumed = time.time()

        tenant.finish_and_check()  # only the INVALID_ARGUMENT ones fail
    tenant.check_no_server_errors()

    # While paused, only the probes (one per PHONEBRIDGE_PAUSE_PROBE_S) and the calls already
    # under way when the first KEY_EXPIRED came back reach upstream.
    stats = stack.sim.control.stats(since=started + 1.0, until=resumed - 0.5)
    probe_s = float(STACK_SETTINGS["PHONEBRIDGE_PAUSE_PROBE_S"])
    most = (resumed - 0.5 - started - 1.0) / probe_s + 2
    assert stats["calls"] <= most, stats
    tenant.figures.notes.update(
        key_expired_s=KEY_EXPIRED_FOR_S,
        paused_s=round(resumed - started, 1),
        upstream_calls_while_paused=stats["calls"],
        failed_tasks_when_paused=failed_before,
    )
