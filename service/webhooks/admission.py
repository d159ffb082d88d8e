"""Each subscription's share of the deliveries one process holds, and pacing beyond it.

A process takes on at most `in_flight_per_subscription` of one subscription's deliveries at a
time, so a slow or dead endpoint cannot fill the process; the rest of a batch is handed back to
be claimed again once that share could have drained (`postpone_s`), judged from the endpoint's
recent latency and how long it has gone without answering.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from service.clock import Clock
from service.config import Settings
from service.domain.delivery import postpone_s
from service.webhooks.dispatch import delivery_lease_s
from service.webhooks.sender import AttemptResult, WebhookSender

# Weight of the newest attempt in a subscription's running latency.
LATENCY_WEIGHT = 0.2


def in_flight_per_subscription(settings: Settings, sender: WebhookSender) -> int:
    """How many of one subscription's deliveries a process holds at once: those sending, and
    those waiting for a turn at the endpoint; as many rounds as fit in one lease, at least one
    (a process holds no more of one endpoint's work than it could start within a lease, so a
    slow endpoint's backlog stays claimable by other processes)."""
    rounds = max(1, int(settings.lease_s // settings.webhook_timeout_s))
    return sender.max_concurrent_per_endpoint * rounds


@dataclass
class _SubscriptionLoad:
    """One subscription's deliveries held by this process, and how fast its endpoint answers."""

    in_flight: int
    # Since when it has gone without an answer: when it became busy, or its latest answer.
    answered_at: datetime
    latency_s: float = 0.0


class SubscriptionAdmission:
    """Decides which leased deliveries this process takes on now and when the others come due
    again; told of every answer (`learn_latency`) and every delivery it is done with (`leave`)."""

    def __init__(
        self, max_per_subscription: int, per_endpoint: int, max_postpone_s: float, clock: Clock
    ) -> None:
        self._max_per_subscription = max_per_subscription
        self._per_endpoint = per_endpoint
        self._max_postpone_s = max_postpone_s
        self._clock = clock
        self._load_by_subscription: dict[int, _SubscriptionLoad] = {}

    @classmethod
    def for_sender(
        cls, settings: Settings, sender: WebhookSender, clock: Clock
    ) -> SubscriptionAdmission:
        return cls(
            in_flight_per_subscription(settings, sender),
            sender.max_concurrent_per_endpoint,
            # By then every attempt this process holds for a subscription has started and ended.
            delivery_lease_s(settings) + settings.webhook_timeout_s,
            clock,
        )

    def admit(self, leased: dict[int, int], now: datetime) -> tuple[list[int], list[int]]:
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

    def postponements(
        self, postponed: list[int], leased: dict[int, int], now: datetime
    ) -> dict[datetime, list[int]]:
        """When each postponed delivery comes due again, grouped (one group per subscription)."""
        groups: dict[datetime, list[int]] = {}
        for delivery_id in postponed:
            load = self._load_by_subscription[leased[delivery_id]]
            delay_s = postpone_s(
                load.in_flight,
                self._per_endpoint,
                load.latency_s,
                (now - load.answered_at).total_seconds(),
                self._max_postpone_s,
            )
            groups.setdefault(now + timedelta(seconds=delay_s), []).append(delivery_id)
        return groups

    def learn_latency(self, subscription_pk: int, result: AttemptResult) -> None:
        load = self._load_by_subscription[subscription_pk]
        latency_s = result.latency_ms / 1000
        load.latency_s += LATENCY_WEIGHT * (latency_s - load.latency_s)
        load.answered_at = self._clock()

    def leave(self, subscription_pk: int) -> None:
        load = self._load_by_subscription[subscription_pk]
        load.in_flight -= 1
        if load.in_flight <= 0:
            del self._load_by_subscription[subscription_pk]
