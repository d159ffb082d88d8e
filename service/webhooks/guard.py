"""The SSRF guard's I/O half: resolving webhook hosts and vetting every address they give.

`check_webhook_url` answers the API (refuse a URL on create and update); `VettingResolver` is
plugged into the sender's connection pool, so the addresses a connection uses are exactly the ones
it has just checked, whatever DNS answered before (no rebinding window).
"""

from __future__ import annotations

import asyncio
import socket
from ipaddress import ip_address
from typing import Protocol

from aiohttp.abc import AbstractResolver, ResolveResult

from service.domain.addresses import IPAddress, Refusal, addresses_refusal, parse_webhook_url

RESOLVE_TIMEOUT_S = 5.0


class HostResolver(Protocol):
    """Turns a host name into the addresses it currently points to."""

    async def resolve(self, host: str, port: int) -> list[IPAddress]: ...


class SystemResolver:
    """The operating system's resolver (getaddrinfo), run off the event loop."""

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses: list[IPAddress] = []
        for _family, _type, _proto, _name, sockaddr in infos:
            address = ip_address(sockaddr[0])
            if address not in addresses:
                addresses.append(address)
        return addresses


class AddressNotAllowed(OSError):
    """A host resolved to an address the guard refuses; the message is safe to record."""


class VettingResolver(AbstractResolver):
    """aiohttp's resolver hook: resolve, refuse the host if any address is not allowed, and
    hand aiohttp only the addresses just checked."""

    def __init__(self, resolver: HostResolver, allow_private: bool) -> None:
        self._resolver = resolver
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            addresses = await self._resolver.resolve(host, port)
        except OSError as error:
            raise OSError(f"cannot resolve {host}: {error.strerror or 'lookup failed'}") from None
        refusal = addresses_refusal(addresses, host, self._allow_private)
        if refusal is not None:
            raise AddressNotAllowed(refusal.reason)
        return [
            ResolveResult(
                hostname=host,
                host=str(address),
                port=port,
                family=socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        return None


async def check_webhook_url(
    url: str, resolver: HostResolver, allow_private: bool
) -> Refusal | None:
    """Why `url` may not be a webhook endpoint, or None: its text, then every address its host
    resolves to now."""
    target = parse_webhook_url(url, allow_private)
    if isinstance(target, Refusal):
        return target
    if target.literal_address is not None:
        return None
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            addresses = await resolver.resolve(target.host, target.port)
    except (OSError, TimeoutError):
        return Refusal(f"{target.host} cannot be resolved")
    return addresses_refusal(addresses, target.host, allow_private)
