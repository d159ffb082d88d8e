"""Delivering a claimed batch of webhooks: sign, send concurrently, record each attempt.

A slow or dead receiver must never hold up the others, so nothing here waits on the slowest
delivery of a batch:
- every delivery is its own concurrent send with its own timeout;
- results are written back as they arrive, a few at a time (whatever finished within a short
  window shares one transaction), not when the whole batch is done;
- the worker task only *starts* a batch (`start_batch`) and returns, so a batch stuck on a dead
  endpoint occupies sockets, not one of the worker's few task slots; the in-flight total per
  process is capped (back-pressure on the broker), and so is each subscription's share of it
  (`admission`), beyond which its deliveries are handed back to be claimed a
  moment later;
- the sender gives each endpoint a bounded number of concurrent requests, so a dead endpoint
  holds a few sockets, not the pool.
Leases make this safe: a process that dies mid-batch loses nothing, its deliveries come due again.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import Clock, utc_now
from service.config import Settings
from service.domain.delivery import (
    Delivered,
    DeliveryDecision,
    EndpointGone,
    GiveUp,
    RetryAt,
    decide_after_attempt,
)
from service.domain.signing import webhook_body, webhook_headers
from service.observability.metrics import record_webhook_attempt, webhook_outcome
from service.store.db import transaction
from service.store.deliveries import (
    AttemptWrite,
    disable_subscription,
    leased_subscriptions,
    load_leased_deliveries,
    postpone_leased,
    record_attempts,
    stop_leased,
)
from service.webhooks.admission import SubscriptionAdmission
from service.webhooks.encryption import SecretCipher, SecretDecryptionError, cipher_for
from service.webhooks.guard import HostResolver
from service.webhooks.sender import AttemptResult, WebhookSender

log = logging.getLogger(__name__)


MAX_IN_FLIGHT = 10_000
# Results finishing within this window after the first one share a write-back transaction.
WRITE_WINDOW_S = 0.02
MAX_WRITE_CHUNK = 1000
# Transactions this service runs at once: within the worker's database pool, never past it
# (connections beyond the pool are opened and closed each time, which is slow).
DATABASE_SLOTS = 4


@dataclass
class DeliveryReport:
    """What one batch did, for logs and tests."""

    attempted: int = 0
    succeeded: int = 0
    retrying: int = 0
    failed: int = 0
    stopped: int = 0
    postponed: int = 0
    written: int = 0


@dataclass(frozen=True)
class _FinishedAttempt:
    """An attempt waiting for the write-back; `written` gets the delivery's new state, or
    'lost' when its lease had passed to someone else."""

    row: Row[Any]
    result: AttemptResult
    lease_token: uuid.UUID
    written: asyncio.Future[str]


class DeliveryService:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        sender: WebhookSender,
        cipher: SecretCipher,
        *,
        clock: Clock = utc_now,
        rand: Callable[[], float] = random.random,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self._schedule = settings.webhook_retry_schedule
        self._sessions = sessions
        self._sender = sender
        self._cipher = cipher
        self._clock = clock
        self._rand = rand
        self._max_in_flight = max_in_flight
        self._in_flight = 0
        self._room = asyncio.Event()
        self._batches: set[asyncio.Task[DeliveryReport]] = set()
        self._db_slots = asyncio.Semaphore(DATABASE_SLOTS)
        self._admission = SubscriptionAdmission.for_sender(settings, sender, clock)
        self._to_write: list[_FinishedAttempt] = []
        self._write_wanted = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        resolver: HostResolver | None = None,
    ) -> DeliveryService:
        sender = WebhookSender(
            settings.webhook_timeout_s, settings.webhook_allow_private, resolver=resolver
        )
        return cls(settings, sessions, sender, cipher_for(settings))

    async def close(self) -> None:
        """Stop: batches still sending are abandoned; their leases bring them back."""
        for batch in list(self._batches):
            batch.cancel()
        await asyncio.gather(*self._batches, return_exceptions=True)
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        await self._sender.close()

    # --- the worker's entry point ----------------------------------------------------------
    async def start_batch(self, ids: Sequence[int], lease_token: uuid.UUID) -> int:
        """Start delivering a claimed batch in the background, once the process has room for
        it; returns at once after that. The batch's outcome is written to Postgres."""
        size = len(ids)
        while self._in_flight > 0 and self._in_flight + size > self._max_in_flight:
            self._room.clear()
            await self._room.wait()
        self._in_flight += size
        batch = asyncio.create_task(self._run_started_batch(list(ids), lease_token, size))
        self._batches.add(batch)
        batch.add_done_callback(self._batches.discard)
        return size

    async def _run_started_batch(
        self, ids: list[int], lease_token: uuid.UUID, size: int
    ) -> DeliveryReport:
        unsettled = size

        def settle(count: int) -> None:
            nonlocal unsettled
            unsettled -= count
            self._make_room(count)

        try:
            return await self.deliver_batch(ids, lease_token, settle=settle)
        except Exception:
            log.exception("webhook.batch_failed", extra={"deliveries": size})
            return DeliveryReport()
        finally:
            self._make_room(unsettled)

    def _make_room(self, count: int) -> None:
        self._in_flight -= count
        self._room.set()

    async def drain(self) -> None:
        """Wait for every started batch to finish (tests, orderly shutdown)."""
        while self._batches:
            await asyncio.gather(*list(self._batches), return_exceptions=True)

    # --- one batch -------------------------------------------------------------------------
    async def deliver_batch(
        self,
        ids: Sequence[int],
        lease_token: uuid.UUID,
        settle: Callable[[int], None] = lambda count: None,
    ) -> DeliveryReport:
        """Deliver the deliveries of `ids` still leased to `lease_token` and record every
        attempt; returns when the last one is written. `settle(n)` is told each time n of the
        batch's deliveries are done with (written, handed back, or not ours any more)."""
        report = DeliveryReport()
        now = self._clock()
        async with self._db_slots, transaction(self._sessions) as session:
            # Decide what this process takes on before loading any event data: what a busy
            # subscription cannot take now is handed back cheaply.
            leased = await leased_subscriptions(session, ids, lease_token, now)
            taken, postponed = self._admission.admit(leased, now)
            comes_due = self._admission.postponements(postponed, leased, now)
            for due_at, postponed_ids in comes_due.items():
                await postpone_leased(session, postponed_ids, lease_token, due_at)
            rows = await load_leased_deliveries(session, taken, lease_token, now)
            inactive = [row.id for row in rows if not row.subscription_active]
            await stop_leased(session, inactive, lease_token, "subscription disabled", now)
        admitted = [row for row in rows if row.subscription_active]
        for row_id in set(taken) - {row.id for row in admitted}:
            self._admission.leave(leased[row_id])
        report.stopped, report.postponed = len(inactive), len(postponed)
        settle(len(ids) - len(admitted))
        secrets_by_subscription: dict[int, list[str] | str] = {}

        async def deliver_one(row: Row[Any]) -> str:
            try:
                result = await self._attempt(row, secrets_by_subscription)
                self._admission.learn_latency(row.subscription_pk, result)
                written: asyncio.Future[str] = asyncio.get_running_loop().create_future()
                self._queue_write(_FinishedAttempt(row, result, lease_token, written))
                return await written
            finally:
                self._admission.leave(row.subscription_pk)
                settle(1)

        for state in await asyncio.gather(*(deliver_one(row) for row in admitted)):
            report.attempted += 1
            if state == "succeeded":
                report.succeeded += 1
            elif state == "pending":
                report.retrying += 1
            elif state == "failed":
                report.failed += 1
        report.written = report.succeeded + report.retrying + report.failed
        return report

    def _secrets(self, row: Row[Any], cache: dict[int, list[str] | str]) -> list[str] | str:
        """The secrets that sign for this row's subscription, or why there are none."""
        cached = cache.get(row.subscription_pk)
        if cached is not None:
            return cached
        try:
            secrets = [self._cipher.decrypt(row.secret_encrypted, row.subscription_id)]
            if row.previous_secret_encrypted is not None:
                secrets.append(
                    self._cipher.decrypt(row.previous_secret_encrypted, row.subscription_id)
                )
            found: list[str] | str = secrets
        except SecretDecryptionError as error:
            log.error("webhook.secret_unreadable", extra={"subscription_id": row.subscription_id})
            found = f"cannot sign: {error}"
        cache[row.subscription_pk] = found
        return found

    async def _attempt(self, row: Row[Any], cache: dict[int, list[str] | str]) -> AttemptResult:
        secrets = self._secrets(row, cache)
        if isinstance(secrets, str):
            return AttemptResult(self._clock(), None, 0, secrets, None, None)
        data = orjson.Fragment(row.event_data_json)
        body = webhook_body(row.event_type, row.event_created_at, data)
        timestamp = int(self._clock().timestamp())
        headers = webhook_headers(secrets, row.event_id, timestamp, body)
        return await self._sender.send(row.url, headers, body)

    # --- the write-back, shared by every batch of the process --------------------------------
    def _queue_write(self, finished: _FinishedAttempt) -> None:
        self._to_write.append(finished)
        self._write_wanted.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_loop())

    async def _write_loop(self) -> None:
        while True:
            await self._write_wanted.wait()
            # Whatever finishes in the next moment shares the transaction: one write per window
            # for the whole process instead of one per delivery.
            await asyncio.sleep(WRITE_WINDOW_S)
            self._write_wanted.clear()
            while self._to_write:
                chunk = self._to_write[:MAX_WRITE_CHUNK]
                del self._to_write[:MAX_WRITE_CHUNK]
                try:
                    await self._write_back(chunk)
                except Exception:
                    # The leases bring these deliveries back; their attempts are sent again.
                    log.exception("webhook.write_back_failed", extra={"attempts": len(chunk)})
                    for item in chunk:
                        if not item.written.done():
                            item.written.set_result("lost")

    async def _write_back(self, finished: Sequence[_FinishedAttempt]) -> None:
        now = self._clock()
        writes: list[AttemptWrite] = []
        gone: dict[int, tuple[str, str]] = {}
        for item in finished:
            row, result = item.row, item.result
            decision = decide_after_attempt(
                result.outcome, row.schedule_attempt + 1, self._schedule, now, self._rand()
            )
            writes.append(_attempt_write(row.id, item.lease_token, result, decision))
            if isinstance(decision, EndpointGone):
                gone[row.subscription_pk] = (row.subscription_id, decision.error)
            self._log_attempt(row, result, decision)
            record_webhook_attempt(webhook_outcome(decision), result.status, result.latency_ms)
        async with self._db_slots, transaction(self._sessions) as session:
            written = await record_attempts(session, writes, now)
            for subscription_pk, (_, reason) in sorted(gone.items()):
                await disable_subscription(session, subscription_pk, reason, now)
        for item, write in zip(finished, writes, strict=True):
            if not item.written.done():
                item.written.set_result(write.state if write.delivery_id in written else "lost")
        for subscription_id, reason in gone.values():
            log.warning(
                "webhook.subscription_disabled",
                extra={"subscription_id": subscription_id, "reason": reason},
            )

    @staticmethod
    def _log_attempt(row: Row[Any], result: AttemptResult, decision: DeliveryDecision) -> None:
        facts = {
            "event_id": row.event_id,
            "subscription_id": row.subscription_id,
            "delivery_pk": row.id,
            "status": result.status,
            "latency_ms": result.latency_ms,
        }
        if isinstance(decision, Delivered):
            log.info("webhook.delivered", extra=facts)
        elif isinstance(decision, RetryAt):
            log.info(
                "webhook.attempt_failed",
                extra={**facts, "error": decision.error, "retry_in_s": round(decision.delay_s)},
            )
        else:
            log.warning("webhook.delivery_failed", extra={**facts, "error": decision.error})


def _attempt_write(
    delivery_id: int, lease_token: uuid.UUID, result: AttemptResult, decision: DeliveryDecision
) -> AttemptWrite:
    if isinstance(decision, Delivered):
        state, next_at, error = "succeeded", None, None
    elif isinstance(decision, RetryAt):
        state, next_at, error = "pending", decision.at, decision.error
    elif isinstance(decision, GiveUp | EndpointGone):
        state, next_at, error = "failed", None, decision.error
    return AttemptWrite(
        delivery_id=delivery_id,
        lease_token=lease_token,
        state=state,
        next_attempt_at=next_at,
        at=result.at,
        response_status=result.status,
        latency_ms=result.latency_ms,
        error=error,
        response_excerpt=result.response_excerpt,
    )
