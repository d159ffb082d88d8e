"""Host resolvers for webhook URLs that answer from a table, so that no test depends on (or
reaches) real DNS."""

from __future__ import annotations

from ipaddress import ip_address

from fastapi import FastAPI

from service.api.app import create_app
from service.config import Settings
from service.domain.addresses import IPAddress

# A documentation-range name that the table resolver maps to a public address; nothing is ever
# sent to it (no worker runs in these tests).
PUBLIC_HOOK_HOST = "hooks.phonebridge-security.test"
PUBLIC_HOOK_ADDRESS = "93.184.215.14"
HOOK_URL = f"https://{PUBLIC_HOOK_HOST}/phonebridge"


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


class PublicTableResolver:
    """Resolves only PUBLIC_HOOK_HOST; every other name fails as an unknown host would."""

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        if host == PUBLIC_HOOK_HOST:
            return [ip_address(PUBLIC_HOOK_ADDRESS)]
        raise OSError(8, "Name or service not known")


def security_app(settings: Settings) -> FastAPI:
    return create_app(settings, resolver=PublicTableResolver())
