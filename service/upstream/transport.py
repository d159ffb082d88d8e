"""A lean httpx transport over one aiohttp session: httpx stays the client's API (requests,
responses, `MockTransport` in tests) while aiohttp moves the bytes.

Why not httpx's own pool: it degrades past ~10 concurrent requests (encode/httpx#3215), and a
worker polls a whole batch at once. Why not the httpx-aiohttp package's transport: at a thousand
polls a second its per-request work shows in profiles (a ClientTimeout built per request, headers
copied through httpx's O(n) lookups, an exception-mapping context per chunk). This one passes the
headers as a plain list, reuses its timeouts, and maps aiohttp's failures to httpx's exceptions
once, so callers see only httpx types.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx

from service.upstream.call_slot import SlotMissed, slot_not_after
from service.wire import BodyNotAfter, too_late_for_wire

DEFAULT_MAX_CONNECTIONS = 200
_CHUNK_BYTES = 16 * 1024


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests with aiohttp; redirects are never followed and bodies are never
    decompressed (the caller sees the response exactly as it came). A request body is read
    whole before sending (phonebridge only sends small JSON bodies)."""

    def __init__(self, *, max_connections: int = DEFAULT_MAX_CONNECTIONS) -> None:
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[Any, ...], aiohttp.ClientTimeout] = {}

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use, so it binds to the loop that sends (the client may be built
        # elsewhere).
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                trust_env=False,
                auto_decompress=False,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    def _timeout_of(self, request: httpx.Request) -> aiohttp.ClientTimeout:
        phases = request.extensions.get("timeout", {})
        key = (phases.get("connect"), phases.get("read"), phases.get("pool"))
        timeout = self._timeouts.get(key)
        if timeout is None:
            timeout = self._timeouts[key] = aiohttp.ClientTimeout(
                sock_connect=key[0], sock_read=key[1], connect=key[2]
            )
        return timeout

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        try:
            response = await self._client().request(
                request.method,
                str(request.url),
                headers=request.headers.multi_items(),
                data=body or None,
                allow_redirects=False,
                timeout=self._timeout_of(request),
            )
        except Exception as error:
            raise _httpx_error_of(error) from error
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_ResponseStream(response),
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def post_bytes(
        self, url: str, headers: list[tuple[str, str]], body: bytes, max_bytes: int
    ) -> tuple[int, bytes, str | None]:
        """POST `body` and answer (status, at most `max_bytes` of the body, Retry-After) with no
        httpx objects in between: the poll's own path. Building an httpx request and response
        around each call (their header bookkeeping above all) was ~8% of a worker's CPU in
        bench/e2e.py's profile, 2026-12-01. Failures raise the same httpx exceptions; a call
        that would go out after its slot's last moment sends nothing and raises SlotMissed
        (service/upstream/call_slot.py)."""
        not_after = slot_not_after()
        try:
            response = await self._client().post(
                url,
                headers=headers,
                data=body if not_after is None else BodyNotAfter(body, not_after),
                allow_redirects=False,
            )
        except Exception as error:
            if too_late_for_wire(error):
                raise SlotMissed from None
            raise _httpx_error_of(error) from error
        try:
            received = bytearray()
            async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
                received += chunk
                if len(received) >= max_bytes:
                    break
        except Exception as error:
            raise _httpx_error_of(error) from error
        finally:
            response.release()
        return response.status, bytes(received[:max_bytes]), response.headers.get("Retry-After")

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(_CHUNK_BYTES):
                yield chunk
        except Exception as error:
            raise _httpx_error_of(error) from error

    async def aclose(self) -> None:
        self._response.release()


def _httpx_error_of(error: Exception) -> Exception:
    """The httpx exception for what aiohttp raised (the caller never sees aiohttp types).
    Messages are fixed texts: aiohttp's may quote the request."""
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout("connection timed out")
    if isinstance(error, TimeoutError):
        return httpx.ReadTimeout("read timed out")
    if isinstance(error, aiohttp.ClientConnectorError):
        return httpx.ConnectError("cannot connect")
    if isinstance(error, aiohttp.ClientPayloadError):
        return httpx.ReadError("malformed response body")
    if isinstance(error, aiohttp.ClientError | OSError):
        return httpx.ReadError("connection failed")
    return error
