"""Submitting a check from the portal: the same submission, pending-limit and budget path as
`POST /v1/checks`, behind the session and its CSRF token, landing on the new task's timeline or
showing why not."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.api.app import create_app
from service.sim.server import SimServer
from service.store.db import transaction
from tests.support.api import asgi_client, bearer
from tests.support.checks import (
    PHONE,
    PHONE_AS_WRITTEN,
    PHONE_MASKED,
    checks_settings,
    submit_calls,
)
from tests.support.factories import new_key
from tests.support.portal import csrf_of, page_csrf, portal_browser, sign_in

FORM = "/portal/checks/new"


@pytest.fixture
async def app(
    database_url: str, redis_url: str, fresh_sim: SimServer, flush_redis: None
) -> AsyncIterator[FastAPI]:
    fresh_sim.control.configure(submit_script="ring-0-60s")
    app = create_app(checks_settings(database_url, redis_url, fresh_sim.base_url))
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def key(app: FastAPI) -> str:
    return await new_key(app.state.settings)


@pytest.fixture
async def person(app: FastAPI, key: str) -> AsyncIterator[httpx.AsyncClient]:
    async with portal_browser(app) as client:
        assert (await sign_in(client, key)).status_code == 303
        yield client


async def post_check(
    person: httpx.AsyncClient, phone_number: str = PHONE, metadata: str = "", **extra: str
) -> httpx.Response:
    form = await person.get(FORM)
    assert form.status_code == 200, form.text
    fields = {"csrf": csrf_of(form.text), "phone_number": phone_number, "metadata": metadata}
    return await person.post("/portal/checks", data={**fields, **extra})


async def test_the_navigation_links_to_the_check_form(person: httpx.AsyncClient) -> None:
    overview = await person.get("/portal")
    assert f'href="{FORM}"' in overview.text
    form = await person.get(FORM)
    assert form.status_code == 200
    assert 'name="phone_number"' in form.text
    assert 'name="csrf"' in form.text
    # The rule it shows names the countries this phonebridge checks.
    assert "a phone number of MX (+52), CO (+57) with its country code" in form.text


async def test_the_form_needs_a_session(app: FastAPI) -> None:
    async with portal_browser(app) as anonymous:
        response = await anonymous.get(FORM)
    assert response.status_code == 303
    assert response.headers["location"] == "/portal/sign-in"


async def test_a_check_posted_without_the_csrf_token_is_refused_and_submits_nothing(
    person: httpx.AsyncClient, fresh_sim: SimServer
) -> None:
    response = await person.post("/portal/checks", data={"phone_number": PHONE})
    assert response.status_code == 403
    assert "CSRF" in response.text
    assert submit_calls(fresh_sim) == 0


async def test_a_pending_check_lands_on_its_timeline_with_the_masked_number_and_source(
    person: httpx.AsyncClient, app: FastAPI, key: str, fresh_sim: SimServer
) -> None:
    response = await post_check(person, PHONE_AS_WRITTEN, '{"order": 42}')

    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith("/portal/tasks/sim-ring-0-60s-")
    assert location.endswith("?notice=submitted")
    task_id = location.removeprefix("/portal/tasks/").split("?")[0]
    timeline = await person.get(location)
    assert timeline.status_code == 200
    assert "Check submitted upstream" in timeline.text
    assert PHONE_MASKED in timeline.text
    assert PHONE[-8:] not in timeline.text
    assert f"by phonebridge, number {PHONE_MASKED}" in timeline.text
    assert '<dd class="source">submitted</dd>' in timeline.text
    assert "&#34;order&#34;: 42" in timeline.text or '"order": 42' in timeline.text
    assert submit_calls(fresh_sim) == 1
    async with asgi_client(app) as api:
        task = (await api.get(f"/v1/tasks/{task_id}", headers=bearer(key))).json()
    assert task["source"] == "submitted"
    assert task["state"] == "pending"
    assert task["phone_number_masked"] == PHONE_MASKED
    assert task["metadata"] == {"order": 42}
    assert fresh_sim.control.task(task_id)["phone_number"] == PHONE


async def test_a_registered_task_shows_its_source_and_no_number(
    person: httpx.AsyncClient, app: FastAPI, key: str
) -> None:
    async with asgi_client(app) as api:
        created = await api.post(
            "/v1/tasks", json={"task_id": "T-from-client"}, headers=bearer(key)
        )
    assert created.status_code == 201
    timeline = await person.get("/portal/tasks/T-from-client")
    assert '<dd class="source">registered</dd>' in timeline.text
    assert "by the client" in timeline.text
    assert "masked-number" not in timeline.text


async def test_an_invalid_number_shows_the_form_again_with_the_reason(
    person: httpx.AsyncClient, fresh_sim: SimServer
) -> None:
    response = await post_check(person, "+1 415 555 0123", '{"order": 1}')

    assert response.status_code == 422
    assert "phone_number: is a number of US (+1); only numbers of MX (+52), CO (+57)" in (
        response.text
    )
    assert 'value="+1 415 555 0123"' in response.text
    assert "order" in response.text  # the metadata typed is kept in the form
    assert submit_calls(fresh_sim) == 0


async def test_metadata_that_is_not_a_json_object_shows_the_form_again(
    person: httpx.AsyncClient, fresh_sim: SimServer
) -> None:
    not_json = await post_check(person, PHONE, "{order: 1")
    not_object = await post_check(person, PHONE, "[1, 2]")

    assert not_json.status_code == 422
    assert "not valid JSON" in not_json.text
    assert not_object.status_code == 422
    assert "metadata" in not_object.text
    assert submit_calls(fresh_sim) == 0


async def test_upstream_refusing_the_number_shows_its_reason_and_code(
    person: httpx.AsyncClient,
) -> None:
    response = await post_check(person, "+57 1 234 5678")  # possible, and no longer valid

    assert response.status_code == 422
    assert "argument &#39;phone_number&#39;: invalid" in response.text
    assert '<code class="code">INVALID_ARGUMENT</code>' in response.text


async def test_an_unreachable_upstream_shows_the_reason_and_code(
    database_url: str, redis_url: str, flush_redis: None
) -> None:
    app = create_app(checks_settings(database_url, redis_url, "http://127.0.0.1:9"))
    async with app.router.lifespan_context(app), portal_browser(app) as person:
        assert (await sign_in(person, await new_key(app.state.settings))).status_code == 303
        response = await post_check(person)

    assert response.status_code == 502
    assert '<code class="code">UPSTREAM_UNAVAILABLE</code>' in response.text
    assert "nothing was submitted" in response.text
    assert f'value="{PHONE}"' in response.text  # the form again, ready to retry


async def test_posting_the_same_form_twice_submits_one_check(
    person: httpx.AsyncClient, fresh_sim: SimServer
) -> None:
    form = await person.get(FORM)
    fields = {
        "csrf": csrf_of(form.text),
        "phone_number": PHONE,
        "idempotency_key": "portal-twice",
    }
    first = await person.post("/portal/checks", data=fields)
    second = await person.post("/portal/checks", data=fields)

    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    assert submit_calls(fresh_sim) == 1


async def test_another_clients_session_never_sees_the_check(
    person: httpx.AsyncClient, app: FastAPI
) -> None:
    response = await post_check(person)
    task_path = response.headers["location"].split("?")[0]
    task_id = task_path.removeprefix("/portal/tasks/")

    async with portal_browser(app) as other:
        assert (await sign_in(other, await new_key(app.state.settings))).status_code == 303
        timeline = await other.get(task_path)
        listing = await other.get("/portal/tasks")
    assert timeline.status_code == 404
    assert task_id not in listing.text
    assert PHONE_MASKED not in listing.text


async def test_a_portal_check_counts_against_the_pending_limit(
    database_url: str, redis_url: str, fresh_sim: SimServer, flush_redis: None
) -> None:
    fresh_sim.control.configure(submit_script="ring-0-60s")
    settings = checks_settings(database_url, redis_url, fresh_sim.base_url, client_max_pending=1)
    app = create_app(settings)
    async with app.router.lifespan_context(app), portal_browser(app) as person:
        assert (await sign_in(person, await new_key(settings))).status_code == 303
        first = await post_check(person)
        second = await post_check(person)

    assert first.status_code == 303
    assert second.status_code == 429
    assert "this client may have 1 pending task;" in second.text
    assert submit_calls(fresh_sim) == 1


async def test_a_portal_check_counts_against_the_daily_check_budget(
    database_url: str, redis_url: str, fresh_sim: SimServer, flush_redis: None
) -> None:
    fresh_sim.control.configure(submit_script="ring-0-60s")
    settings = checks_settings(
        database_url, redis_url, fresh_sim.base_url, client_max_checks_per_day=1
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app), portal_browser(app) as person:
        assert (await sign_in(person, await new_key(settings))).status_code == 303
        first = await post_check(person)
        second = await post_check(person)

    assert first.status_code == 303
    assert second.status_code == 429
    assert '<code class="code">CHECK_BUDGET_EXHAUSTED</code>' in second.text
    assert "1 upstream check per UTC day" in second.text
    assert submit_calls(fresh_sim) == 1


async def test_the_check_form_sets_the_portals_security_headers(person: httpx.AsyncClient) -> None:
    csrf = await page_csrf(person, FORM)
    assert csrf
    response = await person.get(FORM)
    assert "script-src 'none'" in response.headers["content-security-policy"]
    assert "<script" not in response.text


async def test_the_overview_says_whether_upstreams_callbacks_arrive(
    person: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Nothing counted yet: no line. Callbacks going missing, or stopped (an outage): a banner
    that says what it means and where to look; arriving again: a quiet line."""
    assert "callbacks" not in (await person.get("/portal")).text
    location = (await post_check(person)).headers["location"]
    task = location.removeprefix("/portal/tasks/").split("?")[0]

    await set_callback_record(sessions, task, heard=8, missed=2, trusted=False)
    lossy = (await person.get("/portal")).text
    assert "Upstream's callbacks <strong>go missing</strong>: 20% of the recent ones" in lossy
    assert "/hooks/accuauth/" in lossy

    await set_callback_record(sessions, task, heard=99, missed=1, trusted=True, outage=True)
    stopped = (await person.get("/portal")).text
    assert "Upstream's callbacks <strong>stopped arriving</strong>" in stopped
    assert "/hooks/accuauth/" in stopped

    await set_callback_record(sessions, task, heard=99, missed=1, trusted=True)
    healthy = (await person.get("/portal")).text
    assert "Upstream's callbacks arrive (1% of the recent ones went missing)" in healthy
    assert "go missing" not in healthy


async def set_callback_record(
    sessions: async_sessionmaker[AsyncSession],
    task_id: str,
    *,
    heard: float,
    missed: float,
    trusted: bool,
    outage: bool = False,
) -> None:
    async with transaction(sessions) as session:
        await session.execute(
            text(
                "INSERT INTO callback_records (client_id, heard, missed, trusted, lossy, outage, "
                "updated_at) "
                "SELECT client_id, :heard, :missed, :trusted AND NOT :outage, NOT :trusted, "
                ":outage, now() FROM tasks WHERE task_id = :task_id "
                "ON CONFLICT (client_id) DO UPDATE SET heard = EXCLUDED.heard, "
                "missed = EXCLUDED.missed, trusted = EXCLUDED.trusted, lossy = EXCLUDED.lossy, "
                "outage = EXCLUDED.outage"
            ),
            {
                "task_id": task_id,
                "heard": heard,
                "missed": missed,
                "trusted": trusted,
                "outage": outage,
            },
        )
