"""Recording finished attempts in Postgres, shared by every batch of the process.

Each result is written as soon as it arrives, not when its batch is done, so a slow delivery
never holds back the record of a fast one; whatever finishes within a short window shares one
transaction. The write is guarded by the lease token: an attempt whose lease has passed to
someone else is reported as not written (None) and changes nothing.

The same transaction moves each subscription's run of failures on by the attempts written
(service/domain/endpoint_health.py) and disables a subscription whose endpoint answered 410
(`gone`) or whose attempts have all failed for PHONEBRIDGE_WEBHOOK_DISABLE_AFTER_S (`failing`),
with its one `subscription.disabled` event: the subscriptions' rows are locked first, as every
writer of a subscription and its deliveries locks them, so two never wait for each other.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import Clock
from service.domain.delivery import (
    Delivered,
    DeliveryDecision,
    EndpointGone,
    GiveUp,
    RetryAt,
    decide_after_attempt,
)
from service.domain.endpoint_health import AttemptFact, after_attempts, should_disable
from service.domain.states import DeliveryState, DisabledReason, EventType
from service.observability.metrics import (
    record_detection_lag,
    record_disabled_subscription,
    record_webhook_attempt,
    webhook_outcome,
)
from service.store.db import transaction
from service.store.deliveries import AttemptWrite, LeasedDelivery, record_attempts
from service.store.endpoint_health import lock_failure_runs, save_failure_runs
from service.store.outbox import record_subscription_disabled
from service.store.subscriptions import disable_subscription
from service.webhooks.sender import AttemptResult

log = logging.getLogger(__name__)

# Results finishing within this window after the first one share a write-back transaction.
WRITE_WINDOW_S = 0.02
MAX_WRITE_CHUNK = 1000


@dataclass(frozen=True)
class _FinishedAttempt:
    """An attempt waiting for the write-back; `written` gets the delivery's new state, or None
    when its lease had passed to someone else."""

    row: LeasedDelivery
    result: AttemptResult
    lease_token: uuid.UUID
    written: asyncio.Future[DeliveryState | None]


class AttemptWriteBack:
    """Decides each finished attempt's fate and writes it back, a window's worth at a time;
    `db_slots` bounds the transactions it runs together with its owner's."""

    def __init__(
        self,
        schedule: Sequence[float],
        sessions: async_sessionmaker[AsyncSession],
        db_slots: asyncio.Semaphore,
        *,
        disable_after_s: float,
        clock: Clock,
        rand: Callable[[], float],
    ) -> None:
        self._schedule = schedule
        self._disable_after_s = disable_after_s
        self._sessions = sessions
        self._db_slots = db_slots
        self._clock = clock
        self._rand = rand
        self._to_write: list[_FinishedAttempt] = []
        self._write_wanted = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    async def record(
        self, row: LeasedDelivery, result: AttemptResult, lease_token: uuid.UUID
    ) -> DeliveryState | None:
        """Write one attempt with the next window; returns the delivery's new state, or None
        when its lease had passed to someone else or the write failed."""
        written: asyncio.Future[DeliveryState | None] = asyncio.get_running_loop().create_future()
        self._queue_write(_FinishedAttempt(row, result, lease_token, written))
        return await written

    async def close(self) -> None:
        """Stop writing: attempts not yet written come back with their leases."""
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)

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
                            item.written.set_result(None)

    async def _write_back(self, finished: Sequence[_FinishedAttempt]) -> None:
        now = self._clock()
        writes: list[AttemptWrite] = []
        decisions: list[DeliveryDecision] = []
        gone: set[int] = set()
        for item in finished:
            row, result = item.row, item.result
            decision = decide_after_attempt(
                result.outcome, row.schedule_attempt + 1, self._schedule, now, self._rand()
            )
            writes.append(_attempt_write(row.id, item.lease_token, result, decision))
            decisions.append(decision)
            if isinstance(decision, EndpointGone):
                gone.add(row.subscription_pk)
            _log_attempt(row, result, decision)
            record_webhook_attempt(webhook_outcome(decision), result.status, result.latency_ms)
            if (
                isinstance(decision, Delivered)
                and row.event_type is EventType.TASK_COMPLETED
                and row.answer_known_at is not None
            ):
                record_detection_lag((result.at - row.answer_known_at).total_seconds())
        async with self._db_slots, transaction(self._sessions) as session:
            runs = await lock_failure_runs(session, [item.row.subscription_pk for item in finished])
            written = await record_attempts(session, writes, now)
            facts: dict[int, list[AttemptFact]] = {}
            for item, decision in zip(finished, decisions, strict=True):
                # An attempt phonebridge could not sign never reached the endpoint: it says
                # nothing of the endpoint's health.
                if item.row.id in written and item.result.signed:
                    facts.setdefault(item.row.subscription_pk, []).append(
                        AttemptFact(
                            at=item.result.at,
                            succeeded=isinstance(decision, Delivered),
                            exhausted_schedule=isinstance(decision, GiveUp),
                        )
                    )
            moved = {pk: after_attempts(runs[pk], facts[pk]) for pk in facts if pk in runs}
            await save_failure_runs(session, moved)
            to_disable = dict.fromkeys(gone, DisabledReason.GONE) | {
                pk: DisabledReason.FAILING
                for pk, run in moved.items()
                if pk not in gone and should_disable(run, now, self._disable_after_s)
            }
            disabled = []
            for subscription_pk, reason in sorted(to_disable.items()):
                subscription = await disable_subscription(session, subscription_pk, reason, now)
                if subscription is not None:
                    event = await record_subscription_disabled(
                        session, subscription_pk, subscription.public().model_dump_json(), now
                    )
                    disabled.append((subscription.id, reason, moved.get(subscription_pk), event))
        for item, write in zip(finished, writes, strict=True):
            if not item.written.done():
                item.written.set_result(write.state if write.delivery_id in written else None)
        for subscription_id, reason, run, event in disabled:
            record_disabled_subscription(reason)
            log.warning(
                "webhook.subscription_disabled",
                extra={
                    "subscription_id": subscription_id,
                    "reason": reason,
                    "failing_since": None
                    if run is None or run.failing_since is None
                    else run.failing_since.isoformat(),
                    "event_id": event.event_id,
                    "notified_subscriptions": event.deliveries,
                },
            )


def _log_attempt(row: LeasedDelivery, result: AttemptResult, decision: DeliveryDecision) -> None:
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
