"""PostgreSQL restarts while 500 tasks are in flight. Meanwhile the API answers every /v1 call
with a 503 problem (never a 500, never a stack trace) and /readyz says the database is down;
once it is back the API answers at once, even on connections its pool held across the restart,
the registrations clients retry are accepted, and every task completes with its one event
delivered, with no process restarted."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx

from service.api.resources import HOT_POOL_MAX
from tests.support.chaos.stack import Stack
from tests.support.chaos.tenant import Planned, Tenant, plan_tasks
from tests.support.receivers import flaky_receiver
from tests.support.waiting import wait_until

TASKS = 500
OUTAGE_S = 8.0
# More concurrent requests than the API's hot pool holds connections: before the outage they
# fill the pool, after it every one of those connections is dead and must not cost a 503.
CONCURRENT = HOT_POOL_MAX + 8


def client_calls(
    tenant: Tenant, new_task: Planned, task_id: str, event_id: str
) -> list[Callable[[], httpx.Response]]:
    """What clients do: register, read a task, list, read the feed and deliveries, read the
    subscriptions."""
    http = tenant.http
    return [
        lambda: tenant.submit_one(new_task),
        lambda: http.get(f"/v1/tasks/{task_id}"),
        lambda: http.get("/v1/tasks", params={"state": "pending"}),
        lambda: http.get("/v1/events"),
        lambda: http.get(f"/v1/events/{event_id}/deliveries"),
        lambda: http.get("/v1/subscriptions"),
    ]


def problems(responses: list[httpx.Response]) -> list[str]:
    """Answers that are not a clean 503 problem."""
    found = []
    for response in responses:
        where = f"{response.request.method} {response.request.url.path}"
        if response.status_code != 503:
            found.append(f"{where}: {response.status_code}")
        elif "problem+json" not in response.headers["content-type"]:
            found.append(f"{where}: {response.headers['content-type']}")
        elif "Traceback" in response.text or "psycopg" in response.text:
            found.append(f"{where}: {response.text}")
    return found


def test_postgres_restart_answers_503_meanwhile_and_loses_nothing(
    stack: Stack, tenant: Tenant
) -> None:
    with (
        flaky_receiver(failure_rate=0.0, seed=4) as receiver,
        ThreadPoolExecutor(CONCURRENT) as pool,
    ):
        tenant.subscribe(receiver)
        planned = plan_tasks("pg", TASKS, pending_calls=3, pending_s=4)
        tenant.submit(planned)
        wait_until(lambda: len(tenant.events()) >= 30, 30, "the first events")
        task_id, event_id = planned[0].task_id, tenant.events()[0]["id"]
        retried = plan_tasks("pg-retried", 100, pending_calls=1)

        def read_task() -> httpx.Response:
            return tenant.http.get(f"/v1/tasks/{task_id}")

        warm = list(pool.map(lambda _: read_task(), range(CONCURRENT)))
        assert {r.status_code for r in warm} == {200}

        stack.stop_postgres()
        outage: list[httpx.Response] = []
        readyz: Counter[int] = Counter()
        refused: list[Planned] = []
        ends = time.monotonic() + OUTAGE_S
        while time.monotonic() < ends:
            new_task = retried.pop()
            calls = client_calls(tenant, new_task, task_id, event_id)
            outage.extend(pool.map(lambda call: call(), calls))
            refused.append(new_task)
            ready = httpx.get(f"{stack.api_url}/readyz")
            readyz[ready.status_code] += 1
            assert ready.json()["database"] != "ok", ready.text
        assert not problems(outage), f"while PostgreSQL was down: {problems(outage)[:5]}"
        assert readyz == {503: sum(readyz.values())}

        stack.start_postgres()
        back_at = time.monotonic()
        after = list(pool.map(lambda _: read_task(), range(CONCURRENT)))
        # Every registration the API refused, retried as a client does after a 503.
        after.extend(pool.map(tenant.submit_one, refused))
        recovery_s = time.monotonic() - back_at
        after_statuses = Counter(r.status_code for r in after)
        assert set(after_statuses) <= {200, 201}, f"after the restart: {after_statuses}"

        tenant.finish_and_check()
    tenant.check_no_server_errors(allowed=frozenset({503}))
    assert tenant.figures.api_responses[503] == len(outage)
    tenant.figures.notes.update(
        outage_s=OUTAGE_S,
        api_answers_during_outage=dict(Counter(r.status_code for r in outage)),
        readyz_during_outage=dict(readyz),
        api_answers_after_restart=dict(after_statuses),
        retried_registrations=len(refused),
        seconds_to_answer_all_after_restart=round(recovery_s, 2),
    )


def test_connections_held_across_a_quick_restart_cost_no_request(
    stack: Stack, tenant: Tenant
) -> None:
    """A restart nobody calls the API during: every connection the API's pools hold is dead
    when it comes back, and none of them may surface as a 503."""
    planned = plan_tasks("pg-quick", 1)
    tenant.submit(planned)

    def read_task(_: int) -> httpx.Response:
        return tenant.http.get(f"/v1/tasks/{planned[0].task_id}")

    with ThreadPoolExecutor(CONCURRENT) as pool:
        warm = Counter(r.status_code for r in pool.map(read_task, range(CONCURRENT)))
        stack.stop_postgres()
        stack.start_postgres()
        after = Counter(r.status_code for r in pool.map(read_task, range(CONCURRENT)))
        # A fresh key is looked up in the database too (the known one is cached).
        stranger = Tenant(stack, f"{tenant.name}-after-restart")
        try:
            own = stranger.http.get("/v1/subscriptions").status_code
        finally:
            stranger.close()
    assert warm == {200: CONCURRENT}
    assert after == {200: CONCURRENT}
    assert own == 200
    tenant.figures.notes["api_answers_after_quick_restart"] = dict(after)
