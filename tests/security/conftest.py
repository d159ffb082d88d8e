"""Fixtures of the security tests: the real app (lifespan included) over ASGI, a resolver that
answers webhook hosts from a table (no test reaches real DNS), and tenants: clients with their
own tasks, events, subscriptions and deliveries, so isolation has something to leak."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.accounts import create_client_and_key
from service.api.app import create_app
from service.config import Settings
from service.domain.addresses import IPAddress
from tests.conftest import make_settings
from tests.integration.webhooks.conftest import emit_event

# A documentation-range name that the table resolver maps to a public address; nothing is ever
# sent to it (no worker runs in these tests).
PUBLIC_HOOK_HOST = "hooks.phonebridge-security.test"
PUBLIC_HOOK_ADDRESS = "93.184.215.14"
HOOK_URL = f"https://{PUBLIC_HOOK_HOST}/phonebridge"


class PublicTableResolver:
    """Resolves only PUBLIC_HOOK_HOST; every other name fails as an unknown host would."""

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        if host == PUBLIC_HOOK_HOST:
            return [ip_address(PUBLIC_HOOK_ADDRESS)]
        raise OSError(8, "Name or service not known")


def security_app(settings: Settings) -> FastAPI:
    return create_app(settings, resolver=PublicTableResolver())


@pytest.fixture(scope="session")
def security_settings(database_url: str, redis_url: str) -> Settings:
    # Private webhook addresses stay refused, as in production.
    return make_settings(database_url, redis_url, webhook_allow_private=False)


@pytest.fixture(scope="session")
async def security_app_running(security_settings: Settings) -> AsyncIterator[FastAPI]:
    app = security_app(security_settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="session")
async def api(security_app_running: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=security_app_running)
    async with httpx.AsyncClient(transport=transport, base_url="http://phonebridge.test") as client:
        yield client


@dataclass
class Tenant:
    """One phonebridge client and what it owns."""

    id: int
    key: str
    task_ids: list[str] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    subscription_ids: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


async def new_tenant(
    api: httpx.AsyncClient,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    *,
    tasks: int = 3,
    subscriptions: int = 2,
    events: int = 2,
) -> Tenant:
    """A client with pending tasks, subscriptions (with their secrets) and final tasks whose
    events have a delivery to each subscription."""
    name = f"security-{secrets.token_hex(6)}"
    key = await create_client_and_key(settings, name)
    async with sessions() as session:
        client_id = (
            await session.execute(text("SELECT id FROM clients WHERE name = :n"), {"n": name})
        ).scalar_one()
    tenant = Tenant(id=int(client_id), key=key)
    for _ in range(tasks):
        task_id = f"S-{secrets.token_hex(6)}"
        response = await api.post("/v1/tasks", json={"task_id": task_id}, headers=tenant.headers)
        assert response.status_code == 201, response.text
        tenant.task_ids.append(task_id)
    for n in range(subscriptions):
        response = await api.post(
            "/v1/subscriptions",
            json={"url": f"{HOOK_URL}/{n}", "description": f"tenant {name}"},
            headers=tenant.headers,
        )
        assert response.status_code == 201, response.text
        tenant.subscription_ids.append(response.json()["id"])
        tenant.secrets.append(response.json()["secret"])
    for _ in range(events):
        task_id = f"F-{secrets.token_hex(6)}"
        tenant.event_ids.append(await emit_event(sessions, tenant.id, task_id=task_id))
        tenant.task_ids.append(task_id)
    return tenant


@pytest.fixture
async def alice(
    api: httpx.AsyncClient, security_settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> Tenant:
    return await new_tenant(api, security_settings, sessions)


@pytest.fixture
async def mallory(
    api: httpx.AsyncClient, security_settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> Tenant:
    return await new_tenant(api, security_settings, sessions)


# --- what a tenant sees of what it owns ----------------------------------------------------------


async def everything_listed(api: httpx.AsyncClient, tenant: Tenant, path: str) -> list[Any]:
    """Every item of a cursor-paged list, walking it one small page at a time."""
    items: list[Any] = []
    cursor: str | None = None
    while True:
        query = f"?limit=2&cursor={cursor}" if cursor else "?limit=2"
        response = await api.get(path + query, headers=tenant.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def snapshot(api: httpx.AsyncClient, owner: Tenant) -> dict[str, Any]:
    """What the owner sees of all it owns: compared before and after another client's attempts."""
    state: dict[str, Any] = {
        "tasks": await everything_listed(api, owner, "/v1/tasks"),
        "subscriptions": await everything_listed(api, owner, "/v1/subscriptions"),
        "secrets": [
            (await api.get(f"/v1/subscriptions/{s}/secret", headers=owner.headers)).json()
            for s in owner.subscription_ids
        ],
        "deliveries": [
            (await api.get(f"/v1/events/{e}/deliveries", headers=owner.headers)).json()
            for e in owner.event_ids
        ],
    }
    return state


def own_ids(tenant: Tenant) -> dict[str, str]:
    """One id of each kind the tenant owns, by path parameter name."""
    return {
        "task_id": tenant.task_ids[0],
        "event_id": tenant.event_ids[0],
        "subscription_id": tenant.subscription_ids[0],
    }


# --- the routes the app serves ------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # the template, e.g. /v1/tasks/{task_id}

    def url(self, **values: str) -> str:
        """The path with each `{name}` replaced by its value (a placeholder when not given)."""
        return re.sub(r"\{([^}]+)\}", lambda m: values.get(m[1], "x1"), self.path)

    @property
    def path_parameters(self) -> list[str]:
        return re.findall(r"\{([^}]+)\}", self.path)

    @property
    def takes_body(self) -> bool:
        return self.method in {"POST", "PUT", "PATCH"}


def served_operations(app: FastAPI) -> list[Operation]:
    """Every (method, path) the app routes, read from its routing table rather than from its
    OpenAPI schema, so a route left out of the schema is listed too."""
    return sorted(
        {
            Operation(method, str(context.path))
            for context in iter_route_contexts(app.routes)
            for method in (getattr(context, "methods", None) or ())
            if method != "HEAD"
        },
        key=lambda op: (op.path, op.method),
    )


def v1_operations(app: FastAPI) -> list[Operation]:
    return [op for op in served_operations(app) if op.path.startswith("/v1/")]
