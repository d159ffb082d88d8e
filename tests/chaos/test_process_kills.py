"""SIGKILL, as a crash or the OOM killer delivers it, to the workers again and again (and once
to the scheduler) while 500 tasks are in flight: each is restarted as a process supervisor would,
and nothing is lost, no event is emitted twice."""

from __future__ import annotations

import time

from tests.support.chaos.stack import Stack
from tests.support.chaos.tenant import Tenant, plan_tasks
from tests.support.receivers import flaky_receiver

TASKS = 500
WORKER_KILLS = 6
# Long enough for a restarted worker to start polling before the other one is killed.
KILL_EVERY_S = 2.0


def test_workers_killed_repeatedly_lose_nothing_and_duplicate_no_event(
    stack: Stack, tenant: Tenant
) -> None:
    with flaky_receiver(failure_rate=0.0, seed=2) as receiver:
        tenant.subscribe(receiver)
        # Answers arrive from 3 s to 17 s after registration: the kills (2 s to ~13 s) land on
        # polls, write-backs, events being emitted and webhooks being sent.
        tenant.submit(plan_tasks("kill", TASKS, pending_calls=3, pending_s=3, spread_s=14))
        pending_at_kills, events_at_kills = [], []
        for kill in range(WORKER_KILLS):
            time.sleep(KILL_EVERY_S)
            worker = stack.service(f"worker-{1 + kill % 2}")
            pending_at_kills.append(tenant.pending_count())
            events_at_kills.append(len(tenant.events()))
            worker.kill()
            worker.start()
        scheduler = stack.service("scheduler")
        scheduler.kill()
        scheduler.start()
        assert min(pending_at_kills) > 0, f"tasks pending at each kill: {pending_at_kills}"
        assert max(events_at_kills) > 0, f"events emitted at each kill: {events_at_kills}"

        tenant.finish_and_check()
    tenant.check_no_server_errors()
    tenant.figures.notes["sigkills"] = WORKER_KILLS + 1
    tenant.figures.notes["pending_at_each_kill"] = pending_at_kills
    tenant.figures.notes["events_at_each_kill"] = events_at_kills
