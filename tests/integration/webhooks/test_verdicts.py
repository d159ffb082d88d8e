"""The verdict of a result on every surface that shows one: the task (one and the list), the
event feed and the webhook body agree, for every phone_status and for one upstream never
documented; and an event written before results carried a verdict gets its verdict when it is
read or sent, its stored row left as it was."""

from __future__ import annotations

import json
import secrets
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import Webhook

from service.config import Settings
from service.domain.answers import PhoneStatus
from service.domain.verdicts import verdict_of
from service.sim.server import SimServer
from service.store.db import transaction
from tests.support.api import api_client, feed_until
from tests.support.deliveries import Pump
from tests.support.engine import running_engine
from tests.support.factories import ApiClient, emit_event, new_client
from tests.support.receivers import Receiver
from tests.support.settings import engine_settings

Sessions = async_sessionmaker[AsyncSession]

# Upstream's eight, each with the contract's verdict, and one status it never documented.
EXPECTED = {status.value: verdict_of(status) for status in PhoneStatus} | {"voicemail": None}


async def _subscribe(api: httpx.AsyncClient, who: ApiClient, url: str) -> str:
    response = await api.post("/v1/subscriptions", json={"url": url}, headers=who.headers)
    assert response.status_code == 201, response.text
    secret: str = response.json()["secret"]
    return secret


def _key(who: ApiClient) -> str:
    return who.headers["Authorization"].removeprefix("Bearer ")


def _script(phone_status: str) -> str:
    fate = phone_status if phone_status in set(PhoneStatus) else f"status_{phone_status}"
    return f"sim-{fate}-0-{secrets.token_hex(3)}"


async def test_every_surface_shows_the_same_verdict_for_each_status(
    database_url: str,
    redis_url: str,
    fresh_sim: SimServer,
    receiver: Receiver,
    sessions: Sessions,
) -> None:
    settings = engine_settings(
        database_url, redis_url, fresh_sim.base_url, webhook_allow_private=True
    )
    path = f"/{secrets.token_hex(6)}"
    task_ids = {_script(status): status for status in EXPECTED}
    async with api_client(settings) as api:
        client = await new_client(settings, sessions)
        secret = await _subscribe(api, client, receiver.url(path))
        for task_id in task_ids:
            registered = await api.post(
                "/v1/tasks", json={"task_id": task_id}, headers=client.headers
            )
            assert registered.status_code == 201, registered.text
        async with running_engine(settings, deliver=True):
            await receiver.wait_for(len(task_ids), path, timeout=30)

        sent = {}
        for request in receiver.received(path):
            payload = Webhook(secret).verify(request.body, request.headers)
            sent[payload["data"]["task_id"]] = payload["data"]
        feed = await feed_until(api, _key(client), len(task_ids))
        listed = (await api.get("/v1/tasks?limit=50", headers=client.headers)).json()["data"]
        for task_id, phone_status in task_ids.items():
            expected = {
                "phone_number": sent[task_id]["result"]["phone_number"],
                "phone_status": phone_status,
                "verdict": EXPECTED[phone_status],
            }
            [event] = [e for e in feed["data"] if e["data"]["task_id"] == task_id]
            [in_list] = [t for t in listed if t["task_id"] == task_id]
            task = (await api.get(f"/v1/tasks/{task_id}", headers=client.headers)).json()
            assert sent[task_id]["result"] == expected, task_id
            assert event["data"]["result"] == expected, task_id
            assert in_list["result"] == expected, task_id
            assert task["result"] == expected, task_id


async def _strip_the_verdict(sessions: Sessions, event_id: str, **data: Any) -> None:
    """Make a stored event as it was written before results carried a verdict (and with `data`
    merged into its task)."""
    async with transaction(sessions) as session:
        await session.execute(
            text(
                "UPDATE events SET data = (data #- '{result,verdict}') || CAST(:data AS jsonb)"
                " WHERE public_id = :id"
            ),
            {"id": event_id, "data": json.dumps(data)},
        )


async def _stored_result(sessions: Sessions, event_id: str) -> Any:
    async with transaction(sessions) as session:
        return (
            await session.execute(
                text("SELECT data -> 'result' FROM events WHERE public_id = :id"), {"id": event_id}
            )
        ).scalar_one()


async def test_an_event_written_without_a_verdict_is_read_and_sent_with_it(
    hook_settings: Settings, receiver: Receiver, pump: Pump, sessions: Sessions
) -> None:
    path = f"/{secrets.token_hex(6)}"
    async with api_client(hook_settings) as api:
        client = await new_client(hook_settings, sessions)
        secret = await _subscribe(api, client, receiver.url(path))
        event_id = await emit_event(sessions, client.id, "completed")
        # Metadata with an integer beyond 64 bits: the data is read and written again whole.
        big = 123456789012345678901234567890
        await _strip_the_verdict(sessions, event_id, metadata={"n": big})
        assert await _stored_result(sessions, event_id) == {
            "phone_number": "0062********",
            "phone_status": "ring",
        }

        await pump.once()

        [request] = receiver.received(path)
        sent = Webhook(secret).verify(request.body, request.headers)["data"]
        read = (await api.get(f"/v1/events/{event_id}", headers=client.headers)).json()["data"]
        [in_feed] = (await feed_until(api, _key(client), 1))["data"]
    expected = {"phone_number": "0062********", "phone_status": "ring", "verdict": "live"}
    assert sent["result"] == read["result"] == in_feed["data"]["result"] == expected
    assert json.loads(request.body)["data"]["metadata"] == {"n": big}
    assert sent == read
    # Derived when shown, never written back: the stored event is the task as it was.
    assert "verdict" not in await _stored_result(sessions, event_id)


async def test_an_old_event_of_an_undocumented_status_gets_a_null_verdict(
    hook_settings: Settings, receiver: Receiver, pump: Pump, sessions: Sessions
) -> None:
    path = f"/{secrets.token_hex(6)}"
    async with api_client(hook_settings) as api:
        client = await new_client(hook_settings, sessions)
        secret = await _subscribe(api, client, receiver.url(path))
        event_id = await emit_event(sessions, client.id, "completed")
        await _strip_the_verdict(
            sessions, event_id, result={"phone_number": "0062****", "phone_status": "voicemail"}
        )

        await pump.once()

        [request] = receiver.received(path)
        sent = Webhook(secret).verify(request.body, request.headers)["data"]
        read = (await api.get(f"/v1/events/{event_id}", headers=client.headers)).json()["data"]
    expected = {"phone_number": "0062****", "phone_status": "voicemail", "verdict": None}
    assert sent["result"] == read["result"] == expected


async def test_an_event_without_a_result_is_sent_as_it_was_written(
    hook_settings: Settings, receiver: Receiver, pump: Pump, sessions: Sessions
) -> None:
    path = f"/{secrets.token_hex(6)}"
    async with api_client(hook_settings) as api:
        client = await new_client(hook_settings, sessions)
        await _subscribe(api, client, receiver.url(path))
        event_id = await emit_event(sessions, client.id, "expired")

        await pump.once()

        [request] = receiver.received(path)
        read = (await api.get(f"/v1/events/{event_id}", headers=client.headers)).json()["data"]
    assert json.loads(request.body)["data"] == read
    assert read["result"] is None
