"""Upstream misbehaves on about 30% of calls (500s, garbage, HTML error pages, resets, answers
slower than the timeout, RATE_LIMIT_EXCEEDED): every task still ends in the final state its
script leads to, with exactly one event, delivered."""

from __future__ import annotations

from tests.support.chaos.stack import Stack
from tests.support.chaos.tenant import Tenant, plan_tasks
from tests.support.receivers import flaky_receiver

TASKS = 500
FAULTS = {
    "internal_error": 0.10,
    "garbage": 0.06,
    "html": 0.03,
    "reset": 0.03,
    "slow": 0.05,
    "rate_limit": 0.03,
}
SLOW_S = 1.5  # past PHONEBRIDGE_UPSTREAM_TIMEOUT_S


def test_every_task_reaches_its_scripted_state_through_upstream_faults(
    stack: Stack, tenant: Tenant
) -> None:
    with flaky_receiver(failure_rate=0.0, seed=1) as receiver:
        tenant.subscribe(receiver)
        stack.sim.control.replace_faults(probabilities=FAULTS, slow_s=SLOW_S)
        tenant.submit(plan_tasks("upstream", TASKS))
        tenant.finish_and_check(final_within_s=150)
    tenant.check_no_server_errors()
    figures = tenant.figures
    fault_share = figures.upstream_faults / figures.upstream_calls
    figures.notes["upstream_fault_share"] = round(fault_share, 3)
    assert 0.2 < fault_share < 0.4, f"{figures.upstream_faults} of {figures.upstream_calls}"
