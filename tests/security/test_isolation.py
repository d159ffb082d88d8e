"""Isolation between clients on every resource and every list: another client's task, event,
delivery or subscription answers 404 as if it did not exist, never appears in a list, and is left
exactly as it was by every attempt to read, change, cancel, rotate, recover or redeliver it."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.support.api import feed_until
from tests.support.rows import deliveries_of_event
from tests.support.tenants import Tenant, everything_listed, snapshot

RECOVER_WINDOW = {"since": "2020-01-01T00:00:00Z"}


def assert_not_found(response: httpx.Response, *secrets: str) -> None:
    assert response.status_code == 404, (response.request.method, response.request.url)
    assert response.headers["content-type"] == "application/problem+json"
    for secret in secrets:
        assert secret not in response.text


async def test_another_clients_tasks_answer_404_and_are_never_listed(
    api: httpx.AsyncClient, alice: Tenant, mallory: Tenant
) -> None:
    before = await snapshot(api, alice)
    for task_id in alice.task_ids:
        assert_not_found(await api.get(f"/v1/tasks/{task_id}", headers=mallory.headers))
        assert_not_found(await api.delete(f"/v1/tasks/{task_id}", headers=mallory.headers))
    for state in ("pending", "completed", None):
        path = "/v1/tasks" if state is None else f"/v1/tasks?state={state}"
        response = await api.get(path, headers=mallory.headers)
        listed = {task["task_id"] for task in response.json()["data"]}
        assert listed <= set(mallory.task_ids)
    assert {t["task_id"] for t in await everything_listed(api, mallory, "/v1/tasks")} == set(
        mallory.task_ids
    )
    assert await snapshot(api, alice) == before


async def test_a_cursor_of_another_client_shows_nothing_of_that_client(
    api: httpx.AsyncClient, alice: Tenant, mallory: Tenant
) -> None:
    for path in ("/v1/tasks", "/v1/subscriptions"):
        page = (await api.get(f"{path}?limit=1", headers=alice.headers)).json()
        assert page["next_cursor"] is not None
        stolen = await api.get(f"{path}?cursor={page['next_cursor']}", headers=mallory.headers)
        assert stolen.status_code == 200
        shown = {item.get("task_id", item.get("id")) for item in stolen.json()["data"]}
        assert shown.isdisjoint(alice.task_ids + alice.subscription_ids)


async def test_another_clients_events_and_deliveries_answer_404_and_are_never_listed(
    api: httpx.AsyncClient, alice: Tenant, mallory: Tenant
) -> None:
    before = await snapshot(api, alice)
    for event_id in alice.event_ids:
        assert_not_found(await api.get(f"/v1/events/{event_id}", headers=mallory.headers))
        assert_not_found(
            await api.get(f"/v1/events/{event_id}/deliveries", headers=mallory.headers)
        )
        assert_not_found(
            await api.post(f"/v1/events/{event_id}/redeliver", headers=mallory.headers)
        )
        for subscription_id in alice.subscription_ids + mallory.subscription_ids:
            assert_not_found(
                await api.post(
                    f"/v1/events/{event_id}/redeliver",
                    json={"subscription_id": subscription_id},
                    headers=mallory.headers,
                )
            )
        # The feed cannot be positioned on another client's event either.
        after = await api.get(f"/v1/events?after={event_id}", headers=mallory.headers)
        assert after.status_code == 422
    feed = await feed_until(api, mallory.key, len(mallory.event_ids))
    assert [event["id"] for event in feed["data"]] == mallory.event_ids
    assert await snapshot(api, alice) == before


async def test_redeliver_to_another_clients_subscription_answers_404(
    api: httpx.AsyncClient,
    alice: Tenant,
    mallory: Tenant,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    event_id = mallory.event_ids[0]
    for subscription_id in alice.subscription_ids:
        assert_not_found(
            await api.post(
                f"/v1/events/{event_id}/redeliver",
                json={"subscription_id": subscription_id},
                headers=mallory.headers,
            )
        )
    deliveries = (
        await api.get(f"/v1/events/{event_id}/deliveries", headers=mallory.headers)
    ).json()["data"]
    assert {d["subscription_id"] for d in deliveries} == set(mallory.subscription_ids)
    # Every delivery in the store of that event goes to one of mallory's own subscriptions.
    stored = await deliveries_of_event(sessions, event_id)
    assert {row["subscription_public_id"] for row in stored} == set(mallory.subscription_ids)


async def test_another_clients_subscriptions_answer_404_and_are_never_listed(
    api: httpx.AsyncClient, alice: Tenant, mallory: Tenant
) -> None:
    before = await snapshot(api, alice)
    for subscription_id in alice.subscription_ids:
        base = f"/v1/subscriptions/{subscription_id}"
        calls = [
            api.get(base, headers=mallory.headers),
            api.get(f"{base}/secret", headers=mallory.headers),
            api.patch(
                base,
                json={"url": "https://hooks.phonebridge-security.test/stolen", "enabled": False},
                headers=mallory.headers,
            ),
            api.post(f"{base}/rotate-secret", headers=mallory.headers),
            api.post(f"{base}/recover", json=RECOVER_WINDOW, headers=mallory.headers),
            api.delete(base, headers=mallory.headers),
        ]
        for call in calls:
            assert_not_found(await call, *alice.secrets)
    listed = await everything_listed(api, mallory, "/v1/subscriptions")
    assert {s["id"] for s in listed} == set(mallory.subscription_ids)
    assert await snapshot(api, alice) == before
