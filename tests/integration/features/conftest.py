"""The feature layer called directly, as a check job will call it: a hot-pool-like psycopg
connection, a unit of work, and the resources a feature needs, without the API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import Clock, utc_now
from service.config import Settings
from service.webhooks.encryption import SecretCipher, cipher_for
from service.webhooks.guard import HostResolver
from tests.support.factories import insert_client
from tests.support.resolvers import PublicTableResolver


@dataclass(frozen=True)
class Resources:
    """What service.features.resources.FeatureResources asks for."""

    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    cipher: SecretCipher
    resolver: HostResolver = field(default_factory=PublicTableResolver)
    clock: Clock = utc_now


@pytest.fixture
def resources(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> Resources:
    return Resources(settings, sessions, cipher_for(settings))


@pytest.fixture
async def session(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sessions() as unit, unit.begin():
        yield unit


@pytest.fixture
async def client_id(sessions: async_sessionmaker[AsyncSession]) -> int:
    return await insert_client(sessions)
