"""The AccuAuth client: one task_result call in, one `RawAnswer` out, whatever happens.

It never raises for anything the network or upstream does (timeouts, resets, HTML pages, endless
bodies): those become a `RawAnswer` that the pure domain classifies. The credentials are sent as
headers and go nowhere else: no log line, no error message, no exception text carries them (we keep
only the kind of a transport failure, never its text, which may quote a request).

httpx is the client API; by default its requests go through the aiohttp-backed transport, because
httpx's own connection pool degrades past ~10 concurrent requests (encode/httpx#3215) and a worker
polls a whole batch at once (bench/poll.py measures both).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

import httpx
import orjson
from httpx_aiohttp import AiohttpTransport

from service.config import ConfigError, Settings
from service.domain.answers import RawAnswer, TransportError

TASK_RESULT_PATH: Final = "/check/phone_number/task_result/o1"
# Answers are a few hundred bytes; anything much longer is not an answer and is cut off, so a
# misbehaving proxy cannot make a worker buffer megabytes.
MAX_BODY_BYTES: Final = 64 * 1024
DEFAULT_MAX_CONNECTIONS: Final = 200

log = logging.getLogger(__name__)


class UpstreamClient:
    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        if settings.upstream_api_id is None or settings.upstream_api_secret is None:
            raise ConfigError(
                "PHONEBRIDGE_UPSTREAM_API_ID and PHONEBRIDGE_UPSTREAM_API_SECRET must be set"
            )
        self._timeout_s = settings.upstream_timeout_s
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        # Parsed once: httpx's per-request URL merging and parsing is a large share of a poll's
        # CPU cost at a thousand polls a second.
        self._url = httpx.URL(settings.upstream_base_url + TASK_RESULT_PATH)
        self._http = httpx.AsyncClient(
            transport=transport if transport is not None else AiohttpTransport(limits=limits),
            limits=limits,
            timeout=httpx.Timeout(settings.upstream_timeout_s),
            follow_redirects=False,
            headers={
                "X-DF-API-ID": settings.upstream_api_id.get_secret_value(),
                "X-DF-API-SECRET": settings.upstream_api_secret.get_secret_value(),
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
        )

    async def fetch_task_result(self, task_id: str) -> RawAnswer:
        """Ask upstream for one task's result; never raises (except on cancellation)."""
        try:
            # httpx's own timeouts are per phase; this bounds the whole call, including a body
            # that trickles in byte by byte.
            async with asyncio.timeout(self._timeout_s):
                return await self._call(task_id)
        except Exception as error:
            # Exception text may quote the request; only the exception type is kept.
            log.debug("upstream.transport_error", extra={"error_type": type(error).__name__})
            return RawAnswer.failed(transport_error_of(error))

    async def _call(self, task_id: str) -> RawAnswer:
        request = self._http.build_request(
            "POST", self._url, content=orjson.dumps({"task_id": task_id})
        )
        response = await self._http.send(request, stream=True)
        try:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) >= MAX_BODY_BYTES:
                    break
            return RawAnswer(
                status_code=response.status_code,
                body=bytes(body[:MAX_BODY_BYTES]),
                retry_after=response.headers.get("retry-after"),
            )
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()


def transport_error_of(error: Exception) -> TransportError:
    """TIMEOUT only for a real timeout. The aiohttp transport reports some connection failures
    (a server that hangs up, say) as httpx.ConnectTimeout, so the original cause decides."""
    if isinstance(error, TimeoutError):
        return TransportError.TIMEOUT
    if isinstance(error, httpx.TimeoutException):
        cause = error.__cause__
        if cause is None or isinstance(cause, TimeoutError):
            return TransportError.TIMEOUT
    return TransportError.CONNECTION_ERROR
