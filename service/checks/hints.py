"""Upstream's completion callback, taken as a hint and never as a result.

Each client has one callback URL, `<PHONEBRIDGE_PUBLIC_URL>/hooks/accuauth/<token>` (the token is
192 random bits, made on first use). A callback whose token and task_id match one of that client's
pending tasks makes the task due now; the normal claim path then polls it (rate ceiling, leases
and pause all apply) and the poll decides. See service/store/hints.py for the one statement.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta

from psycopg import AsyncConnection
from psycopg.rows import DictRow

from service.clock import Clock, utc_now
from service.config import Settings
from service.domain.callbacks import LATE_CALLBACK_GRACE_S
from service.domain.intake import TASK_ID_PATTERN
from service.domain.states import HintOutcome
from service.observability.metrics import record_hint
from service.store import hints as hint_store

HOOK_PATH = "/hooks/accuauth/"
TOKEN_BYTES = 24  # 192 bits; the contract asks for at least 128
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{16,64}")
LATE_CALLBACK_GRACE = timedelta(seconds=LATE_CALLBACK_GRACE_S)

ConnectionSource = Callable[[], AbstractAsyncContextManager[AsyncConnection[DictRow]]]


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class CallbackUrls:
    """Each client's callback URL; tokens never change, so each is read once per process."""

    def __init__(self, settings: Settings, connection: ConnectionSource) -> None:
        self._public_url = settings.public_url
        self._connection = connection
        self._tokens: dict[int, str] = {}

    async def token_for(self, client_id: int) -> str:
        token = self._tokens.get(client_id)
        if token is None:
            new = secrets.token_urlsafe(TOKEN_BYTES)
            async with self._connection() as conn:
                token = await hint_store.callback_token(
                    conn, client_id, new_token=new, new_token_hash=token_digest(new)
                )
            self._tokens[client_id] = token
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
                outcome = await hint_store.apply_hint(
                    conn,
                    token_hash=token_digest(token),
                    task_id=task_id,
                    now=now,
                    interval=self._min_interval,
                    early_until=now + self._early_for,
                    late_since=now - LATE_CALLBACK_GRACE,
                )
        record_hint(outcome.value)
        return outcome
