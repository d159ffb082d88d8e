"""The AccuAuth client: one call (a task_result poll or a check's submit) in, one `RawAnswer`
out, whatever happens.

It never raises for anything the network or upstream does (timeouts, resets, HTML pages, endless
bodies): those become a `RawAnswer` that the pure domain classifies. The credentials are sent as
headers and go nowhere else: no log line, no error message, no exception text carries them (we keep
only the kind of a transport failure, never its text, which may quote a request).

httpx is the client API (requests, responses, exceptions, `MockTransport` in tests); by default
the bytes move over aiohttp (service/upstream/transport.py), because httpx's own connection pool
degrades past ~10 concurrent requests (encode/httpx#3215) and a worker polls a whole batch at once
(bench/poll.py measures both). Every call is the same POST to the same URL with the same headers,
so the request is built from parts made once and handed straight to the transport: the
AsyncClient's per-request machinery (URL merging, auth, redirects, cookies, event hooks) was most
of a poll's client CPU at a thousand polls a second and does nothing for this call. The
transport raises httpx's exceptions, so a connection that was never made (nothing reached
upstream) is told from one that failed later whichever way a call goes.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Final

import httpx
import orjson

from service.config import ConfigError, Settings
from service.domain.answers import RawAnswer, TransportError
from service.upstream.call_slot import SlotMissed, slot_not_after
from service.upstream.transport import DEFAULT_MAX_CONNECTIONS, AiohttpTransport

TASK_RESULT_PATH: Final = "/check/phone_number/task_result/o1"
SUBMIT_PATH: Final = "/check/phone_number/o1"
# Answers are a few hundred bytes; anything much longer is not an answer and is cut off, so a
# misbehaving proxy cannot make a worker buffer megabytes.
MAX_BODY_BYTES: Final = 64 * 1024

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SubmitCall:
    """What one submit produced; `surely_not_sent` when no connection was ever made."""

    answer: RawAnswer
    surely_not_sent: bool


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
        self._transport = (
            transport
            if transport is not None
            else AiohttpTransport(max_connections=max_connections)
        )
        self._url = httpx.URL(settings.upstream_base_url + TASK_RESULT_PATH)
        self._submit_url = httpx.URL(settings.upstream_base_url + SUBMIT_PATH)
        # Every header is given, Host and Content-Length included, and the body is a stream:
        # httpx then adds nothing itself, and its header bookkeeping for that (a linear search
        # per header, re-encoding each time) was most of the cost of building a request.
        self._headers = [
            ("Host", self._url.netloc.decode("ascii")),
            ("X-DF-API-ID", settings.upstream_api_id.get_secret_value()),
            ("X-DF-API-SECRET", settings.upstream_api_secret.get_secret_value()),
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
            # Answers are a few hundred bytes: compressing them would only cost CPU both ways.
            ("Accept-Encoding", "identity"),
        ]
        # The same call without httpx around it (the default transport's own path); aiohttp
        # adds Host and Content-Length itself.
        self._url_text = str(self._url)
        self._submit_url_text = str(self._submit_url)
        self._aiohttp_headers = [pair for pair in self._headers if pair[0] != "Host"]

    async def fetch_task_result(self, task_id: str) -> RawAnswer:
        """Ask upstream for one task's result; never raises, except on cancellation and
        SlotMissed (nothing sent: too late for its slot, service/upstream/call_slot.py)."""
        try:
            # The one bound on the whole call: connecting, sending, and a body that trickles in
            # byte by byte (no per-phase timers to reschedule on every read).
            async with asyncio.timeout(self._timeout_s):
                return await self._call(
                    self._url, self._url_text, orjson.dumps({"task_id": task_id})
                )
        except SlotMissed:
            raise
        except Exception as error:
            # Exception text may quote the request; only the exception type is kept.
            log.debug("upstream.transport_error", extra={"error_type": type(error).__name__})
            return RawAnswer.failed(transport_error_of(error))

    async def submit_check(self, phone_number: str, callback: str | None) -> SubmitCall:
        """Submit one check (`POST /check/phone_number/o1`); never raises, except on
        cancellation and SlotMissed (nothing sent). Not idempotent upstream: the caller decides
        what an unknown outcome means, so the answer says whether the request surely never left
        (no connection)."""
        body: dict[str, str] = {"phone_number": phone_number}
        if callback is not None:
            body["callback"] = callback
        try:
            async with asyncio.timeout(self._timeout_s):
                answer = await self._call(
                    self._submit_url, self._submit_url_text, orjson.dumps(body)
                )
                return SubmitCall(answer, False)
        except SlotMissed:
            raise
        except Exception as error:
            # Exception text may quote the request (and the number): only the type is kept.
            log.debug("upstream.transport_error", extra={"error_type": type(error).__name__})
            not_sent = isinstance(error, httpx.ConnectError | httpx.ConnectTimeout)
            return SubmitCall(RawAnswer.failed(transport_error_of(error)), not_sent)

    async def _call(self, url: httpx.URL, url_text: str, content: bytes) -> RawAnswer:
        """POST `content` to `url`: straight through aiohttp with the default transport (which
        raises httpx's exceptions either way), through httpx's transport interface with any
        other (tests' MockTransport)."""
        if isinstance(self._transport, AiohttpTransport):
            status, answer, retry_after = await self._transport.post_bytes(
                url_text, self._aiohttp_headers, content, MAX_BODY_BYTES
            )
            return RawAnswer(status_code=status, body=answer, retry_after=retry_after)
        # Another transport (tests' MockTransport) cannot be checked at the wire: checked here.
        not_after = slot_not_after()
        if not_after is not None and asyncio.get_running_loop().time() > not_after:
            raise SlotMissed
        request = httpx.Request(
            "POST",
            url,
            headers=[*self._headers, ("Content-Length", str(len(content)))],
            stream=httpx.ByteStream(content),
        )
        response = await self._transport.handle_async_request(request)
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
        await self._transport.aclose()


def transport_error_of(error: Exception) -> TransportError:
    """TIMEOUT only for a real timeout: an httpx timeout whose cause (when a transport gives
    one) is a timeout too, since some transports report other connection failures as one."""
    if isinstance(error, TimeoutError):
        return TransportError.TIMEOUT
    if isinstance(error, httpx.TimeoutException):
        cause = error.__cause__
        if cause is None or isinstance(cause, TimeoutError):
            return TransportError.TIMEOUT
    return TransportError.CONNECTION_ERROR
