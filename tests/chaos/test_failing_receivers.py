"""Two receivers fail about half of the attempts they get (500, 503 with Retry-After, 429, or
no answer before the timeout): every event still reaches both, signed, and each delivery's
attempt log holds exactly the requests its receiver saw, with the status it answered."""

from __future__ import annotations

from tests.support.chaos.stack import Stack
from tests.support.chaos.tenant import Tenant, plan_tasks
from tests.support.receivers import flaky_receiver

TASKS = 500


def test_every_event_is_delivered_and_every_attempt_logged(stack: Stack, tenant: Tenant) -> None:
    with (
        flaky_receiver(failure_rate=0.5, seed=5) as first,
        flaky_receiver(failure_rate=0.5, seed=6) as second,
    ):
        tenant.subscribe(first)
        tenant.subscribe(second)
        tenant.submit(plan_tasks("hooks", TASKS, pending_calls=1))
        tenant.finish_and_check(delivered_within_s=120, attempts=True)
    tenant.check_no_server_errors()
    figures = tenant.figures
    failed_share = figures.webhook_attempts_failed / figures.webhook_attempts
    figures.notes["webhook_failed_share"] = round(failed_share, 3)
    assert 0.3 < failed_share < 0.6, (
        f"{figures.webhook_attempts_failed} of {figures.webhook_attempts}"
    )
