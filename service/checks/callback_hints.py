"""Upstream's completion callback, taken as a hint and never as a result.

Each client has one callback URL, `<PHONEBRIDGE_PUBLIC_URL>/hooks/accuauth/<token>`. The token is
192 bits of an HMAC, under a key derived from the deployment's secret (PHONEBRIDGE_SECRET_KEY or
the key file), of the client id and its callback generation: nothing needs to store it, and only
its SHA-256 is kept (set on first use), by which a callback finds its client. Rotating
(`phonebridge api-key rotate-callback`) moves the client to the next generation; the previous
token stays accepted for PHONEBRIDGE_TASK_TTL_S, so the checks already submitted with it still
call back. A changed secret key works like a rotation at the next use.

A callback whose token and task_id match one of that client's pending tasks makes the task due
now; the normal claim path then polls it (rate ceiling, leases and pause all apply) and the poll
decides. A callback for a task not (yet) known is kept as an early hint, at most
PHONEBRIDGE_EARLY_HINTS_MAX per client (the oldest dropped, counted in
phonebridge_early_hints_dropped): the holder of a token cannot fill the database. See
service/store/callback_hints.py for the one statement.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from functools import cached_property

from psycopg import AsyncConnection
from psycopg.rows import DictRow

from service.clock import Clock, utc_now
from service.config import Settings
from service.domain.callback_trust import LATE_CALLBACK_GRACE_S
from service.domain.intake import TASK_ID_PATTERN
from service.domain.states import HintOutcome
from service.observability.metrics import record_early_hints_dropped, record_hint
from service.secret_key import deployment_key
from service.store import callback_hints as hint_store

HOOK_PATH = "/hooks/accuauth/"
TOKEN_BYTES = 24  # 192 bits; the contract asks for at least 128
CALLBACK_KEY_LABEL = b"phonebridge callback tokens v1"
# How long an API process hands out a client's callback URL before it reads the generation again.
TOKEN_TTL_S = 30.0
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{16,64}")
LATE_CALLBACK_GRACE = timedelta(seconds=LATE_CALLBACK_GRACE_S)

ConnectionSource = Callable[[], AbstractAsyncContextManager[AsyncConnection[DictRow]]]


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def callback_token(key: bytes, client_id: int, generation: int) -> str:
    """The client's callback token of `generation`: TOKEN_BYTES of an HMAC, URL-safe base64."""
    mac = hmac.new(key, f"callback {client_id} {generation}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:TOKEN_BYTES]).decode()


class CallbackUrls:
    """Each client's callback URL. Its token is derived, and the generation behind it is read
    again after TOKEN_TTL_S, so a rotation reaches every API process within that."""

    def __init__(
        self, settings: Settings, connection: ConnectionSource, *, clock: Clock = utc_now
    ) -> None:
        self._public_url = settings.public_url
        self._settings = settings
        self._connection = connection
        self._clock = clock
        self._grace = timedelta(seconds=settings.task_ttl_s)
        self._tokens: dict[int, tuple[str, float]] = {}

    @cached_property
    def _key(self) -> bytes:
        # Built on first use: it may read the key file under data_dir.
        return deployment_key(self._settings, CALLBACK_KEY_LABEL)

    async def token_for(self, client_id: int) -> str:
        cached = self._tokens.get(client_id)
        now = self._clock()
        if cached is not None and cached[1] > now.timestamp():
            return cached[0]
        async with self._connection() as conn:
            generation, kept = await hint_store.callback_generation(conn, client_id)
            token = callback_token(self._key, client_id, generation)
            digest = token_digest(token)
            if kept is None or not hmac.compare_digest(kept, digest):
                await hint_store.keep_callback_digest(
                    conn,
                    client_id,
                    generation=generation,
                    token_hash=digest,
                    grace_until=now + self._grace,
                )
        self._tokens[client_id] = (token, now.timestamp() + TOKEN_TTL_S)
        return token

    async def url_for(self, client_id: int) -> str | None:
        """The URL to pass upstream as `callback`; None when no public URL is configured."""
        if self._public_url is None:
            return None
        return f"{self._public_url}{HOOK_PATH}{await self.token_for(client_id)}"


class HintService:
    def __init__(
        self, settings: Settings, connection: ConnectionSource, *, clock: Clock = utc_now
    ) -> None:
        self._connection = connection
        self._clock = clock
        self._min_interval = timedelta(seconds=settings.hint_min_interval_s)
        self._early_for = timedelta(seconds=settings.task_ttl_s)
        self._early_max = settings.early_hints_max

    async def receive(self, token: str, task_id: str | None) -> HintOutcome:
        """Take one callback as a hint. Whatever it carries, at most one indexed statement; a
        malformed token or task_id costs none."""
        if (
            not _TOKEN_SHAPE.fullmatch(token)
            or task_id is None
            or not TASK_ID_PATTERN.fullmatch(task_id)
        ):
            outcome = HintOutcome.UNKNOWN
        else:
            now = self._clock()
            async with self._connection() as conn:
                result = await hint_store.apply_hint(
                    conn,
                    token_hash=token_digest(token),
                    task_id=task_id,
                    now=now,
                    interval=self._min_interval,
                    early_until=now + self._early_for,
                    late_since=now - LATE_CALLBACK_GRACE,
                    early_max=self._early_max,
                )
            outcome = result.outcome
            if result.early_dropped:
                record_early_hints_dropped(result.early_dropped)
        record_hint(outcome.value)
        return outcome
