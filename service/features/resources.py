"""What the features need of the process that runs them, as a protocol: the API's
`ApiResources` provides it, and so can a worker's (the check jobs) without importing the API."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import Clock
from service.config import Settings
from service.webhooks.encryption import SecretCipher
from service.webhooks.guard import HostResolver


class FeatureResources(Protocol):
    @property
    def settings(self) -> Settings: ...

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]: ...

    # Vets the hosts of webhook URLs.
    @property
    def resolver(self) -> HostResolver: ...

    # Seals the webhook secrets at rest.
    @property
    def cipher(self) -> SecretCipher: ...

    @property
    def clock(self) -> Clock: ...
