"""The path parameters that name a client's task, event or subscription (service/api/paths.py),
on routes of a small app of the test's own sharing the run's API resources: an id of the right
shape reaches the route as sent; text no id of its kind can have (too long, a character outside
the alphabet, NUL) is a 404 problem that echoes at most an id's length of it, before the route
runs; and a call without a valid key is a 401 whatever its path says."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from service.api.errors import install_error_handlers
from service.api.paths import EventIdPath, SubscriptionIdPath, TaskIdPath
from tests.support.api import asgi_client, bearer

ran: list[str] = []


@pytest.fixture
async def probe(api_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.state.resources = api_app.state.resources
    install_error_handlers(app)

    @app.get("/tasks/{task_id}")
    async def task(task_id: TaskIdPath) -> str:
        ran.append(task_id)
        return task_id

    @app.get("/events/{event_id}")
    async def event(event_id: EventIdPath) -> str:
        ran.append(event_id)
        return event_id

    @app.get("/subscriptions/{subscription_id}")
    async def subscription(subscription_id: SubscriptionIdPath) -> str:
        ran.append(subscription_id)
        return subscription_id

    ran.clear()
    async with asgi_client(app) as client:
        client.app = app  # type: ignore[attr-defined]
        yield client


@pytest.mark.parametrize(
    "path",
    [
        "/tasks/T-1:abc.def_9",
        "/tasks/" + "x" * 128,
        "/events/evt_2Yx9",
        "/events/" + "e" * 40,
        "/subscriptions/sub_Q1",
    ],
)
async def test_an_id_of_the_right_shape_reaches_the_route_as_sent(
    probe: httpx.AsyncClient, key: str, path: str
) -> None:
    answered = await probe.get(path, headers=bearer(key))

    assert answered.status_code == 200
    assert answered.json() == path.split("/")[-1]


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/tasks/" + "x" * 129, "task"),
        ("/tasks/T%201", "task"),
        ("/tasks/T%00", "task"),
        ("/events/" + "e" * 41, "event"),
        ("/events/evt-1", "event"),
        ("/events/evt%00", "event"),
        ("/subscriptions/sub.1", "subscription"),
        ("/subscriptions/" + "s" * 500, "subscription"),
    ],
)
async def test_text_no_id_can_have_is_not_found_before_the_route_runs(
    probe: httpx.AsyncClient, key: str, path: str, kind: str
) -> None:
    answered = await probe.get(path, headers=bearer(key))

    assert answered.status_code == 404
    assert answered.headers["content-type"].startswith("application/problem+json")
    problem = answered.json()
    assert problem["detail"].startswith(f"no {kind} ")
    assert len(problem["detail"]) < 200  # an id's length of the text, not all of it
    assert "\x00" not in problem["detail"]
    assert ran == []


@pytest.mark.parametrize("path", ["/tasks/T-1", "/tasks/T%00", "/events/" + "e" * 41])
async def test_a_call_without_a_valid_key_is_refused_first(
    probe: httpx.AsyncClient, path: str
) -> None:
    assert (await probe.get(path)).status_code == 401
    assert ran == []


async def test_each_parameter_is_described_under_its_own_name(probe: httpx.AsyncClient) -> None:
    schema = probe.app.openapi()  # type: ignore[attr-defined]
    described = {
        parameter["name"]: parameter["description"]
        for operation in schema["paths"].values()
        for parameter in operation["get"].get("parameters", [])
        if parameter["in"] == "path"
    }

    assert described == {
        "task_id": "The upstream task_id.",
        "event_id": "An event id, `evt_...`.",
        "subscription_id": "A subscription id, `sub_...`.",
    }
