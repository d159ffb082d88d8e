"""Redis loses everything twice while 500 tasks are in flight: a FLUSHALL, then a restart of
the server (it keeps nothing on disk). PostgreSQL is the source of truth: the work is found
again and finished, no event is emitted twice, and no process needs restarting."""

from __future__ import annotations

import time

from tests.support.chaos.stack import Stack
from tests.support.chaos.tenant import Tenant, plan_tasks
from tests.support.receivers import flaky_receiver
from tests.support.waiting import wait_until

TASKS = 500
REDIS_DOWN_S = 2.0


def test_flushall_and_a_redis_restart_lose_nothing(stack: Stack, tenant: Tenant) -> None:
    with flaky_receiver(failure_rate=0.0, seed=3) as receiver:
        tenant.subscribe(receiver)
        tenant.submit(plan_tasks("redis", TASKS, pending_calls=3, pending_s=6))

        def upstream_calls() -> int:
            stats = stack.sim.control.stats(since=tenant.started_at, endpoint="task_result")
            return int(stats["calls"])

        wait_until(lambda: upstream_calls() >= TASKS // 2, 30, "polling to be under way")
        pending_at_flush = tenant.pending_count()
        stack.flushall()

        wait_until(lambda: upstream_calls() >= TASKS * 3 // 2, 30, "polling to go on")
        pending_at_restart = tenant.pending_count()
        stack.redis_service.kill()
        time.sleep(REDIS_DOWN_S)
        stack.start_redis()
        assert pending_at_flush > 0, "the flush hit work in flight"
        assert pending_at_restart > 0, "the restart hit work in flight"

        tenant.finish_and_check()
    tenant.check_no_server_errors()
    tenant.figures.notes["pending_at_flushall"] = pending_at_flush
    tenant.figures.notes["pending_at_redis_restart"] = pending_at_restart
