"""Tenants of the security tests: clients with their own tasks, events, subscriptions and
deliveries, so that isolation has something to leak, and what a tenant sees of what it owns."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from tests.support.api import bearer
from tests.support.factories import client_and_key, emit_event
from tests.support.resolvers import HOOK_URL


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
        return bearer(self.key)


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
    client_id, key = await client_and_key(settings, sessions, name)
    tenant = Tenant(id=client_id, key=key)
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
