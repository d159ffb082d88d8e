"""Delivering a claimed batch of webhooks: sign, send concurrently, record each attempt.

A slow or dead receiver must never hold up the others, so nothing here waits on the slowest
delivery of a batch:
- every delivery is its own concurrent send with its own timeout;
- results are written back as they arrive, a few at a time (whatever finished within a short
  window shares one transaction), not when the whole batch is done (`write_back`);
- the worker task only *starts* a batch (`start_batch`) and returns, so a batch stuck on a dead
  endpoint occupies sockets, not one of the worker's few task slots; the in-flight total per
  process is capped (back-pressure on the broker), and so is each subscription's share of it
  (`admission`), beyond which its deliveries are handed back to be claimed a moment later;
- the sender gives each endpoint a bounded number of concurrent requests, so a dead endpoint
  holds a few sockets, not the pool;
- a subscription with a `max_rps` is paced across every worker (service/webhooks/pacing.py): its
  deliveries wait for their turns, a near one in the process (sleeping, not in a task slot), a
  far one in their rows, neither using up an attempt.
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
from typing import Any

import orjson
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import Clock, utc_now
from service.config import Settings
from service.domain.delivery import POSTPONE_S
from service.domain.signing import webhook_body, webhook_headers
from service.domain.states import DeliveryState
from service.heartbeat import LeaseKeeper
from service.observability.metrics import record_webhook_turns
from service.observability.traces import record_span, tracing_on
from service.store.db import transaction
from service.store.deliveries import (
    LeasedDelivery,
    leased_subscriptions,
    load_leased_deliveries,
    postpone_leased,
    stop_leased,
    wait_in_rows,
)
from service.store.leases import LeasedTable
from service.webhooks.admission import SubscriptionAdmission
from service.webhooks.dispatch import delivery_lease_s
from service.webhooks.encryption import SecretCipher, SecretDecryptionError, cipher_for
from service.webhooks.pacing import SubscriptionPace, place_turns
from service.webhooks.sender import AttemptResult, WebhookSender
from service.webhooks.write_back import AttemptWriteBack

log = logging.getLogger(__name__)


MAX_IN_FLIGHT = 10_000
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
    # Deliveries of paced subscriptions handed back to wait in their rows for a turn, and those
    # that missed their turn in this process (they take another).
    waiting_for_turn: int = 0
    missed_turn: int = 0
    written: int = 0

    def count_attempts(self, states: Sequence[DeliveryState | None]) -> None:
        """Add the attempts whose deliveries now have these states (None when not written)."""
        for state in states:
            self.attempted += 1
            if state == DeliveryState.SUCCEEDED:
                self.succeeded += 1
            elif state == DeliveryState.PENDING:
                self.retrying += 1
            elif state == DeliveryState.FAILED:
                self.failed += 1
        self.written = self.succeeded + self.retrying + self.failed


class DeliveryService:
    """A process's webhook deliveries: the batches it sends, each subscription's share of them
    (`SubscriptionAdmission`), the turns of paced subscriptions (`SubscriptionPace`), and the
    write-back of their attempts (`AttemptWriteBack`)."""

    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        sender: WebhookSender,
        cipher: SecretCipher,
        leases: LeaseKeeper,
        *,
        redis: Redis[Any] | None = None,
        clock: Clock = utc_now,
        rand: Callable[[], float] = random.random,
    ) -> None:
        """`redis`: the process's client, shared; without one the service opens its own on
        PHONEBRIDGE_REDIS_URL (and closes it)."""
        self._own_redis = redis is None
        self._redis: Redis[Any] = redis or Redis.from_url(settings.require_redis_url())
        self._pace = SubscriptionPace(self._redis)
        self._sessions = sessions
        self._lease_s = delivery_lease_s(settings)
        self._leases = leases
        self._sender = sender
        self._cipher = cipher
        self._clock = clock
        self._max_in_flight = MAX_IN_FLIGHT
        self._in_flight = 0
        self._room = asyncio.Event()
        self._batches: set[asyncio.Task[DeliveryReport]] = set()
        self._db_slots = asyncio.Semaphore(DATABASE_SLOTS)
        self._admission = SubscriptionAdmission.for_sender(settings, sender, clock, MAX_IN_FLIGHT)
        self._write_back = AttemptWriteBack(
            settings.webhook_retry_schedule,
            sessions,
            self._db_slots,
            disable_after_s=settings.webhook_disable_after_s,
            clock=clock,
            rand=rand,
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        leases: LeaseKeeper,
        redis: Redis[Any] | None = None,
    ) -> DeliveryService:
        sender = WebhookSender(settings.webhook_timeout_s, settings.webhook_allow_private)
        return cls(settings, sessions, sender, cipher_for(settings), leases, redis=redis)

    @property
    def lease_s(self) -> float:
        """How long a delivery leased to this process stays leased without a renewal."""
        return self._lease_s

    async def close(self) -> None:
        """Stop: batches still sending are abandoned; their leases bring them back."""
        for batch in list(self._batches):
            batch.cancel()
        await asyncio.gather(*self._batches, return_exceptions=True)
        await self._write_back.close()
        await self._sender.close()
        if self._own_redis:
            await self._redis.aclose()  # type: ignore[attr-defined]  # stubs predate aclose

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
        admitted, turns, report = await self._take_on(ids, lease_token)
        settle(len(ids) - len(admitted))
        if not admitted:
            return report
        secrets_by_subscription: dict[int, list[str] | str] = {}
        # Sends do not look at the lease's end (a write-back after it is guarded by the token);
        # what is known here is that it held when the batch was loaded.
        valid_until = self._clock()
        held_ids = [row.id for row in admitted]
        with self._leases.hold(LeasedTable.DELIVERIES, lease_token, held_ids, valid_until):
            states = await asyncio.gather(
                *(
                    self._deliver_one(
                        row, lease_token, secrets_by_subscription, settle, turns.get(row.id)
                    )
                    for row in admitted
                )
            )
        missed = [row.id for row, state in zip(admitted, states, strict=True) if state is _MISSED]
        if missed:
            await self._hand_back_missed(missed, lease_token)
        report.missed_turn = len(missed)
        report.count_attempts([s for s in states if not isinstance(s, _MissedTurn)])
        return report

    async def _take_on(
        self, ids: Sequence[int], lease_token: uuid.UUID
    ) -> tuple[list[LeasedDelivery], dict[int, datetime], DeliveryReport]:
        """The deliveries of `ids` this process sends now, with the turn each of a paced
        subscription waits for; the rest, still ours, are handed back (their subscription has no
        room, or their turn is far off) or stopped (their subscription is disabled)."""
        now = self._clock()
        async with self._db_slots, transaction(self._sessions) as session:
            # Decide what this process takes on before loading any event data: what a busy
            # subscription cannot take now is handed back cheaply.
            leased = await leased_subscriptions(session, ids, lease_token, now)
            subscription_of = {row_id: paced.subscription_pk for row_id, paced in leased.items()}
            taken, postponed = self._admission.admit(subscription_of, now)
            comes_due = self._admission.postponements(postponed, subscription_of, now)
            for due_at, postponed_ids in comes_due.items():
                await postpone_leased(session, postponed_ids, lease_token, due_at)
            turns = await place_turns(self._pace, leased, taken, self._clock)
            await wait_in_rows(session, turns.in_rows, lease_token)
            retry_at = self._clock() + timedelta(seconds=POSTPONE_S)
            await postpone_leased(session, turns.unplaced, lease_token, retry_at)
            leaving = set(turns.leaving)
            rows = await load_leased_deliveries(
                session, [row_id for row_id in taken if row_id not in leaving], lease_token, now
            )
            inactive = [row.id for row in rows if not row.subscription_active]
            await stop_leased(session, inactive, lease_token, "subscription disabled", now)
        admitted = [row for row in rows if row.subscription_active]
        for row_id in set(taken) - {row.id for row in admitted}:
            self._admission.leave(subscription_of[row_id])
        record_webhook_turns(
            in_worker=sum(row.id in turns.send_at for row in admitted),
            in_row=len(turns.in_rows),
        )
        report = DeliveryReport(
            stopped=len(inactive),
            postponed=len(postponed) + len(turns.unplaced),
            waiting_for_turn=len(turns.in_rows),
        )
        return admitted, turns.send_at, report

    async def _deliver_one(
        self,
        row: LeasedDelivery,
        lease_token: uuid.UUID,
        secrets_by_subscription: dict[int, list[str] | str],
        settle: Callable[[int], None],
        turn_at: datetime | None,
    ) -> DeliveryState | _MissedTurn | None:
        """Send one delivery (at its turn, for a paced subscription) and wait for its attempt
        to be written; returns its new state (None when the write changed nothing), or _MISSED
        when it could not start within its turn (nothing sent; its batch hands it back)."""
        try:
            turn_s = None
            if turn_at is not None:
                loop = asyncio.get_running_loop()
                turn_s = loop.time() + (turn_at - self._clock()).total_seconds()
                await asyncio.sleep(max(0.0, turn_s - loop.time()))
            result = await self._attempt(row, secrets_by_subscription, turn_s)
            if result is None:
                return _MISSED
            if tracing_on():
                trace_attempt(row, result)
            self._admission.learn_latency(row.subscription_pk, result)
            return await self._write_back.record(row, result, lease_token)
        finally:
            self._admission.leave(row.subscription_pk)
            settle(1)

    async def _hand_back_missed(self, ids: list[int], lease_token: uuid.UUID) -> None:
        """Deliveries too late for their turns go back to their rows, due now: each takes the
        next free turn when it comes back (the lease would bring them back too, only later)."""
        record_webhook_turns(missed=len(ids))
        log.info("webhook.missed_turns", extra={"deliveries": len(ids)})
        async with self._db_slots, transaction(self._sessions) as session:
            await postpone_leased(session, ids, lease_token, self._clock())

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
        self, row: LeasedDelivery, cache: dict[int, list[str] | str], turn_s: float | None
    ) -> AttemptResult | None:
        """One signed attempt (None: too late for its turn, nothing sent)."""
        secrets = self._secrets(row, cache)
        if isinstance(secrets, str):
            return AttemptResult(self._clock(), None, 0, secrets, None, None, signed=False)
        data = orjson.Fragment(row.event_data_json)
        body = webhook_body(row.event_type, row.event_created_at, data)
        timestamp = int(self._clock().timestamp())
        headers = webhook_headers(secrets, row.event_id, timestamp, body)
        return await self._sender.send_in_turn(row.url, headers, body, turn_s)


def trace_attempt(row: LeasedDelivery, result: AttemptResult) -> None:
    """The attempt's span, under the poll that brought its event (traces on)."""
    attributes: dict[str, str | int] = {
        "phonebridge.delivery_pk": row.id,
        "phonebridge.event_id": row.event_id,
        "phonebridge.subscription_id": row.subscription_id,
        "phonebridge.attempt": row.schedule_attempt + 1,
    }
    if result.status is not None:
        attributes["http.response.status_code"] = result.status
    failed = result.status is None or result.status >= 300
    record_span(
        "webhook.attempt",
        parent=row.traceparent,
        started_at=result.at,
        ended_at=result.at + timedelta(milliseconds=result.latency_ms),
        attributes=attributes,
        error=(result.error or f"HTTP {result.status}") if failed else None,
    )


class _MissedTurn:
    """A delivery that could not start within its turn: not sent."""


_MISSED = _MissedTurn()
