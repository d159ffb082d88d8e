"""Fixtures of the webhook tests: a real local receiver, and a resolver driven by a table."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.accounts import create_client_and_key
from service.api.app import create_app
from service.config import Settings
from service.domain.addresses import IPAddress
from service.store.db import transaction
from service.store.deliveries import claim_due_deliveries
from service.store.outbox import FinishedTask, record_events
from service.store.tables import Task
from service.webhooks.dispatch import delivery_lease_s
from service.webhooks.encryption import cipher_for
from service.webhooks.guard import HostResolver
from service.webhooks.sender import WebhookSender
from service.webhooks.service import DeliveryReport, DeliveryService
from tests.conftest import make_settings
from tests.integration.webhooks.receiver import Receiver, running_receiver


class TableResolver:
    """Answers from a table the test controls, so no test depends on real DNS; each host may
    have a list of answers given in turn (the last one repeats) to play DNS rebinding."""

    def __init__(self, table: dict[str, list[list[str]]]) -> None:
        self.table = table
        self.lookups: list[str] = []

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        self.lookups.append(host)
        answers = self.table.get(host)
        if not answers:
            raise OSError(8, "Name or service not known")
        current = answers.pop(0) if len(answers) > 1 else answers[0]
        return [ip_address(a) for a in current]


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    with running_receiver() as server:
        yield server


# --- the API, clients, events and a hand-cranked delivery loop --------------------------------


class FakeClock:
    """Real time plus an offset the test moves forward, so retries come due without waiting."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


def webhook_settings(database_url: str, redis_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "webhook_allow_private": True,
        "webhook_timeout_s": 0.5,
        "webhook_retry_schedule": (1.0, 1.0),
        "lease_s": 5.0,
    }
    values.update(overrides)
    return make_settings(database_url, redis_url, **values)


@pytest.fixture(scope="session")
def hook_settings(database_url: str, redis_url: str) -> Settings:
    return webhook_settings(database_url, redis_url)


@asynccontextmanager
async def api_client(
    settings: Settings, resolver: HostResolver | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """The real app (lifespan included) over ASGI."""
    app = create_app(settings, resolver=resolver)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http,
    ):
        http.app = app  # type: ignore[attr-defined]
        yield http


@pytest.fixture(scope="session")
async def api(hook_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(hook_settings) as http:
        yield http


@dataclass(frozen=True)
class ApiClient:
    """One phonebridge client: its id and its API key's headers."""

    id: int
    headers: dict[str, str]


async def new_client(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> ApiClient:
    name = f"webhooks-{secrets.token_hex(4)}"
    key = await create_client_and_key(settings, name)
    async with sessions() as session:
        client_id = (
            await session.execute(text("SELECT id FROM clients WHERE name = :n"), {"n": name})
        ).scalar_one()
    return ApiClient(int(client_id), {"authorization": f"Bearer {key}"})


async def emit_event(
    sessions: async_sessionmaker[AsyncSession],
    client_id: int,
    state: str = "completed",
    task_id: str | None = None,
) -> str:
    """A task reaching a final state, recorded through the engine's outbox (event + deliveries);
    returns the event's public id."""
    now = datetime.now(UTC)
    async with transaction(sessions) as session:
        task = Task(
            client_id=client_id,
            task_id=task_id or f"T-{secrets.token_hex(6)}",
            state=state,
            result={"phone_number": "0062********", "phone_status": "ring"}
            if state == "completed"
            else None,
            metadata_={"order": "A-17"},
            submitted_at=now,
            registered_at=now,
            expires_at=now + timedelta(days=1),
            completed_at=now,
            poll_count=1,
        )
        session.add(task)
        await session.flush()
        [event_pk] = await record_events(session, [FinishedTask.of(task)], now)
        public_id = (
            await session.execute(
                text("SELECT public_id FROM events WHERE id = :i"), {"i": event_pk}
            )
        ).scalar_one()
    return str(public_id)


async def deliveries_of_event(
    sessions: async_sessionmaker[AsyncSession], event_id: str
) -> list[dict[str, Any]]:
    async with sessions() as session:
        result = await session.execute(
            text(
                """
                SELECT d.*, s.public_id AS subscription_public_id FROM deliveries d
                JOIN events e ON e.id = d.event_id JOIN subscriptions s ON s.id = d.subscription_id
                WHERE e.public_id = :e ORDER BY d.id
                """
            ),
            {"e": event_id},
        )
        return [dict(row._mapping) for row in result]


class Pump:
    """The scheduler's delivery step and a worker, run by hand: claim what is due by the fake
    clock, deliver it, wait for the write-back."""

    def __init__(
        self,
        service: DeliveryService,
        sessions: async_sessionmaker[AsyncSession],
        clock: FakeClock,
        settings: Settings,
    ) -> None:
        self.service = service
        self.sessions = sessions
        self.clock = clock
        self.lease_s = delivery_lease_s(settings)

    async def claim(self) -> tuple[uuid.UUID, list[int]]:
        async with transaction(self.sessions) as session:
            return await claim_due_deliveries(session, self.clock(), self.lease_s, 1000)

    async def once(self) -> DeliveryReport:
        token, ids = await self.claim()
        return await self.service.deliver_batch(ids, token)


@pytest.fixture
async def pump(
    hook_settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Pump]:
    clock = FakeClock()
    sender = WebhookSender(hook_settings.webhook_timeout_s, allow_private=True)
    service = DeliveryService(
        hook_settings, sessions, sender, cipher_for(hook_settings), clock=clock
    )
    yield Pump(service, sessions, clock, hook_settings)
    await service.close()
