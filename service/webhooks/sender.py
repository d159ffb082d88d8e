"""The SSRF-safe webhook sender: one signed POST, one recorded result, never an exception.

Where the connection goes is decided here, not by whatever DNS says later: every host name is
resolved at connect time by `VettingResolver`, every address it returns is checked against the
rules of service.domain.addresses, and aiohttp connects to exactly those checked addresses (the
Host header and TLS SNI keep the name). There is no DNS cache, so a rebinding answer is checked
like any other. IP literals never reach a resolver; their address is checked before the request.
Proxies from the environment are ignored (trust_env=False): a proxy would connect on our behalf
to an address we never saw.

A request of a paced subscription must start within its turn (service/domain/pacing.py). That
is checked as its body is written, the moment its bytes go out (service/wire.py): a busy event
loop that let several requests wait between their turn and the wire would otherwise send them
together, in one burst (the bench saw 57 in a second at max_rps 50 with the check made when the
connection was handed over). A request too late for its turn is abandoned with nothing sent.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp

from service.domain.addresses import Refusal, WebhookTarget, parse_webhook_url
from service.domain.delivery import AttemptOutcome
from service.domain.pacing import latest_start
from service.domain.redaction import redact_urls
from service.webhooks.guard import AddressNotAllowed, HostResolver, SystemResolver, VettingResolver
from service.wire import BodyNotAfter, too_late_for_wire

EXCERPT_BYTES = 1024
MAX_CONCURRENT_PER_ENDPOINT = 100
USER_AGENT = "phonebridge-webhooks/1"
# Distinct URLs whose syntactic check is remembered (it depends on the text alone).
TARGET_CACHE_SIZE = 4096
_MAX_ERROR_CHARS = 300


@dataclass(frozen=True)
class AttemptResult:
    """One attempt as it goes into the attempt log."""

    at: datetime
    status: int | None
    latency_ms: int
    error: str | None
    response_excerpt: str | None
    retry_after: str | None
    # False when phonebridge could not sign it: the endpoint never had its chance, so the attempt
    # does not count against the endpoint's health (service/domain/endpoint_health.py).
    signed: bool = True

    @property
    def outcome(self) -> AttemptOutcome:
        return AttemptOutcome(self.status, self.error, self.retry_after)


def decode_excerpt(raw: bytes) -> str:
    """Up to EXCERPT_BYTES of a response body as text that Postgres accepts (no NUL)."""
    return raw[:EXCERPT_BYTES].decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def _short(text: str) -> str:
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 1] + "…"


def describe_transport_error(error: BaseException, timeout_s: float) -> str:
    """A short explanation of why no HTTP answer arrived (no headers, no secrets: a URL in an
    exception's text keeps only its scheme, host and port)."""
    return redact_urls(_transport_error_text(error, timeout_s))


def _transport_error_text(error: BaseException, timeout_s: float) -> str:
    if isinstance(error, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return f"timed out after {timeout_s:g} s"
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        return "TLS certificate verification failed"
    if isinstance(error, aiohttp.ClientConnectorSSLError | aiohttp.ClientSSLError):
        return "TLS handshake failed"
    if isinstance(error, aiohttp.ClientConnectorError):
        cause = error.os_error
        if isinstance(cause, AddressNotAllowed):
            return f"address not allowed: {cause}"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        return _short(f"cannot connect: {cause.strerror or cause}")
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "the receiver closed the connection without answering"
    if isinstance(error, aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        return "the receiver's answer was malformed"
    if isinstance(error, aiohttp.ClientError | OSError):
        return _short(f"{type(error).__name__}: {error}")
    return type(error).__name__


class WebhookSender:
    """Sends webhook requests from one event loop over a shared connection pool.

    At most `max_concurrent_per_endpoint` requests go to one endpoint (scheme, host, port) at
    once: receivers are not flooded, connections are reused, and a request's timeout starts when
    it really starts, not while it waits for its turn. Create it on the loop that will use it;
    `close` it when done.
    """

    def __init__(
        self,
        timeout_s: float,
        allow_private: bool,
        resolver: HostResolver | None = None,
        max_concurrent_per_endpoint: int = MAX_CONCURRENT_PER_ENDPOINT,
    ) -> None:
        self.timeout_s = timeout_s
        self.allow_private = allow_private
        self.max_concurrent_per_endpoint = max_concurrent_per_endpoint
        self._resolver = VettingResolver(resolver or SystemResolver(), allow_private)
        self._session: aiohttp.ClientSession | None = None
        self._endpoints: dict[str, _EndpointSlots] = {}
        # The check of a URL's text is pure and cost more than signing the body; a process sends
        # to few distinct URLs. Addresses are still resolved and vetted at every connect.
        self._target_of = functools.lru_cache(maxsize=TARGET_CACHE_SIZE)(
            functools.partial(parse_webhook_url, allow_private=allow_private)
        )

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=self._resolver,
                use_dns_cache=False,
                # The per-endpoint limit is ours (see send); a global pool limit would make
                # requests to a healthy receiver queue behind a dead one.
                limit=0,
                limit_per_host=0,
                keepalive_timeout=30,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,
                auto_decompress=False,
                headers={"user-agent": USER_AGENT},
            )
        return self._session

    @asynccontextmanager
    async def _turn(self, target: WebhookTarget) -> AsyncIterator[None]:
        key = f"{target.scheme}://{target.host}:{target.port}"
        slots = self._endpoints.get(key)
        if slots is None:
            slots = self._endpoints[key] = _EndpointSlots(self.max_concurrent_per_endpoint)
        slots.users += 1
        try:
            async with slots.semaphore:
                yield
        finally:
            slots.users -= 1
            if slots.users == 0:
                del self._endpoints[key]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, url: str, headers: Mapping[str, str], body: bytes) -> AttemptResult:
        """POST `body` to `url` once. Every failure is a result, never an exception."""
        result = await self.send_in_turn(url, headers, body, None)
        assert result is not None  # without a turn nothing is too late
        return result

    async def send_in_turn(
        self, url: str, headers: Mapping[str, str], body: bytes, turn_s: float | None
    ) -> AttemptResult | None:
        """`send`, for a request that must start within its turn of its subscription's pace at
        `turn_s` (the loop's clock): None, and nothing sent, when it could not start in time (the
        endpoint's concurrency or a busy loop kept it waiting; service/domain/pacing.py)."""
        target = self._target_of(url)
        if isinstance(target, Refusal):
            refused = f"address not allowed: {target.reason}"
            return AttemptResult(datetime.now(UTC), None, 0, refused, None, None)
        async with self._turn(target):
            at = datetime.now(UTC)
            started = time.perf_counter()
            data = body if turn_s is None else BodyNotAfter(body, latest_start(turn_s))
            try:
                async with asyncio.timeout(self.timeout_s):
                    async with self._client().post(
                        url, data=data, headers=dict(headers), allow_redirects=False
                    ) as response:
                        raw = await response.content.read(EXCERPT_BYTES)
                        status = response.status
                        retry_after = response.headers.get("retry-after")
            except Exception as error:  # anything the network does becomes a recorded failure
                if too_late_for_wire(error):
                    return None
                latency = round((time.perf_counter() - started) * 1000)
                error_text = describe_transport_error(error, self.timeout_s)
                return AttemptResult(at, None, latency, error_text, None, None)
        latency = round((time.perf_counter() - started) * 1000)
        return AttemptResult(at, status, latency, None, decode_excerpt(raw), retry_after)


class _EndpointSlots:
    """The turns of one endpoint, and how many requests hold or wait for one."""

    def __init__(self, size: int) -> None:
        self.semaphore = asyncio.Semaphore(size)
        self.users = 0
