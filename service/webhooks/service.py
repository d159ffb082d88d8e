"""Delivering a claimed batch of webhooks: sign, send concurrently, record each attempt.

A slow or dead receiver must never hold up the others, so nothing here waits on the slowest
delivery of a batch:
- every delivery is its own concurrent send with its own timeout;
- results are written back as they arrive, a few at a time (whatever finished within a short
  window shares one transaction), not when the whole batch is done;
- the worker task only *starts* a batch (`start_batch`) and returns, so a batch stuck on a dead
  endpoint occupies sockets, not one of the worker's few task slots; the in-flight total per
  process is capped (back-pressure on the broker), and so is each subscription's share of it
  (`in_flight_per_subscription`), beyond which its deliveries are handed back to be claimed a
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
from datetime import datetime, timedelta

import orjson
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
from service.domain.states import DeliveryState
from service.observability.metrics import record_webhook_attempt, webhook_outcome
from service.store.db import transaction
from service.store.deliveries import (
    AttemptWrite,
    LeasedDelivery,
    disable_subscription,
    leased_subscriptions,
    load_leased_deliveries,
    postpone_leased,
    record_attempts,
    stop_leased,
)
from service.webhooks.dispatch import delivery_lease_s
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
# A delivery handed back because its subscription already has its share in flight comes due
# again after about the time that share takes to drain, and no sooner than this.
POSTPONE_S = 1.0
# Weight of the newest attempt in a subscription's running latency.
LATENCY_WEIGHT = 0.2


def in_flight_per_subscription(settings: Settings, sender: WebhookSender) -> int:
    """How many of one subscription's deliveries a process holds at once: those sending, and
    those waiting for a turn at the endpoint. Even if every attempt times out, the last one
    starts before its lease (PHONEBRIDGE_LEASE_S plus one timeout) runs out."""
    rounds = max(1, int(settings.lease_s // settings.webhook_timeout_s))
    return sender.max_concurrent_per_endpoint * rounds


def postpone_s(
    in_flight: int, per_endpoint: int, latency_s: float, unanswered_s: float, ceiling_s: float
) -> float:
    """How long to hand back a delivery whose subscription has its full share in flight: about
    the time that share takes to drain, i.e. `in_flight / per_endpoint` rounds of attempts, each
    as long as the subscription's recent latency or as long as it has now gone without any
    answer, whichever is longer; within [POSTPONE_S, ceiling_s].

    A dead endpoint's deliveries are then claimed about once per drain instead of every second:
    that churn of claims and hand-backs was what slowed every other subscription's deliveries.
    A busy but healthy endpoint drains in well under a second and keeps POSTPONE_S."""
    rounds = in_flight / per_endpoint
    return min(ceiling_s, max(POSTPONE_S, rounds * max(latency_s, unanswered_s)))


@dataclass
class _SubscriptionLoad:
    """One subscription's deliveries held by this process, and how fast its endpoint answers."""

    in_flight: int
    # Since when it has gone without an answer: when it became busy, or its latest answer.
    answered_at: datetime
    latency_s: float = 0.0


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

    row: LeasedDelivery
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
        self._max_per_subscription = in_flight_per_subscription(settings, sender)
        # By then every attempt this process holds for a subscription has started and ended.
        self._max_postpone_s = delivery_lease_s(settings)
        self._in_flight = 0
        self._load_by_subscription: dict[int, _SubscriptionLoad] = {}
        self._room = asyncio.Event()
        self._batches: set[asyncio.Task[DeliveryReport]] = set()
        self._db_slots = asyncio.Semaphore(DATABASE_SLOTS)
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
            taken, postponed = self._admit(leased, now)
            for due_at, postponed_ids in self._postponements(postponed, leased, now).items():
                await postpone_leased(session, postponed_ids, lease_token, due_at)
            rows = await load_leased_deliveries(session, taken, lease_token, now)
            inactive = [row.id for row in rows if not row.subscription_active]
            await stop_leased(session, inactive, lease_token, "subscription disabled", now)
        admitted = [row for row in rows if row.subscription_active]
        for row_id in set(taken) - {row.id for row in admitted}:
            self._leave(leased[row_id])
        report.stopped, report.postponed = len(inactive), len(postponed)
        settle(len(ids) - len(admitted))
        secrets_by_subscription: dict[int, list[str] | str] = {}

        async def deliver_one(row: LeasedDelivery) -> str:
            try:
                result = await self._attempt(row, secrets_by_subscription)
                self._learn_latency(row.subscription_pk, result)
                written: asyncio.Future[str] = asyncio.get_running_loop().create_future()
                self._queue_write(_FinishedAttempt(row, result, lease_token, written))
                return await written
            finally:
                self._leave(row.subscription_pk)
                settle(1)

        for state in await asyncio.gather(*(deliver_one(row) for row in admitted)):
            report.attempted += 1
            if state == DeliveryState.SUCCEEDED:
                report.succeeded += 1
            elif state == DeliveryState.PENDING:
                report.retrying += 1
            elif state == DeliveryState.FAILED:
                report.failed += 1
        report.written = report.succeeded + report.retrying + report.failed
        return report

    def _admit(self, leased: dict[int, int], now: datetime) -> tuple[list[int], list[int]]:
        """Split leased deliveries (id -> subscription) into those this process takes on now
        and those its subscription has no room for."""
        taken: list[int] = []
        postponed: list[int] = []
        for delivery_id, subscription_pk in sorted(leased.items()):
            load = self._load_by_subscription.get(subscription_pk)
            if load is None:
                load = self._load_by_subscription[subscription_pk] = _SubscriptionLoad(0, now)
            if load.in_flight >= self._max_per_subscription:
                postponed.append(delivery_id)
            else:
                load.in_flight += 1
                taken.append(delivery_id)
        return taken, postponed

    def _postponements(
        self, postponed: list[int], leased: dict[int, int], now: datetime
    ) -> dict[datetime, list[int]]:
        """When each postponed delivery comes due again, grouped (one group per subscription)."""
        groups: dict[datetime, list[int]] = {}
        for delivery_id in postponed:
            load = self._load_by_subscription[leased[delivery_id]]
            delay_s = postpone_s(
                load.in_flight,
                self._sender.max_concurrent_per_endpoint,
                load.latency_s,
                (now - load.answered_at).total_seconds(),
                self._max_postpone_s,
            )
            groups.setdefault(now + timedelta(seconds=delay_s), []).append(delivery_id)
        return groups

    def _learn_latency(self, subscription_pk: int, result: AttemptResult) -> None:
        load = self._load_by_subscription[subscription_pk]
        latency_s = result.latency_ms / 1000
        load.latency_s += LATENCY_WEIGHT * (latency_s - load.latency_s)
        load.answered_at = self._clock()

    def _leave(self, subscription_pk: int) -> None:
        load = self._load_by_subscription[subscription_pk]
        load.in_flight -= 1
        if load.in_flight <= 0:
            del self._load_by_subscription[subscription_pk]

    def _secrets(self, row: LeasedDelivery, cache: dict[int, list[str] | str]) -> list[str] | str:
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

    async def _attempt(
        self, row: LeasedDelivery, cache: dict[int, list[str] | str]
    ) -> AttemptResult:
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
    def _log_attempt(
        row: LeasedDelivery, result: AttemptResult, decision: DeliveryDecision
    ) -> None:
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
        state, next_at, error = DeliveryState.SUCCEEDED, None, None
    elif isinstance(decision, RetryAt):
        state, next_at, error = DeliveryState.PENDING, decision.at, decision.error
    elif isinstance(decision, GiveUp | EndpointGone):
        state, next_at, error = DeliveryState.FAILED, None, decision.error
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
