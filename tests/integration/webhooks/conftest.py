"""Fixtures of the webhook tests: a real local receiver, the API, and a hand-cranked delivery
loop."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.heartbeat import LeaseKeeper
from service.webhooks.batch_delivery import DeliveryService
from service.webhooks.encryption import cipher_for
from service.webhooks.sender import WebhookSender
from tests.support.api import api_client
from tests.support.deliveries import FakeClock, Pump
from tests.support.receivers import Receiver, running_receiver


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    """One receiver for the directory (it overrides the per-test one): tests tell their
    requests apart by paths of their own."""
    with running_receiver() as server:
        yield server


@pytest.fixture(scope="session")
async def api(hook_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(hook_settings) as http:
        yield http


@pytest.fixture
async def pump(
    hook_settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Pump]:
    clock = FakeClock()
    sender = WebhookSender(hook_settings.webhook_timeout_s, allow_private=True)
    leases = LeaseKeeper(sessions, hook_settings.lease_s, clock=clock)
    service = DeliveryService(
        hook_settings, sessions, sender, cipher_for(hook_settings), leases, clock=clock
    )
    yield Pump(service, sessions, clock, hook_settings)
    await service.close()
