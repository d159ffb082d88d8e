"""Each subscription's share of the deliveries one process holds, and pacing beyond it.

A process takes on at most a share of one subscription's deliveries at a time
(`subscription_share`: the rounds of attempts that fit in a lease at the endpoint's recent
latency, whole timeouts for an endpoint not heard from or gone quiet), so a slow or dead endpoint
cannot fill the process while a healthy one's burst is sent in one go; the rest of a batch is
handed back to be claimed again once that share could have drained (`postpone_s`), judged from
the endpoint's recent latency and how long it has gone without answering.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from service.clock import Clock
from service.config import Settings
from service.domain.delivery import postpone_s, subscription_share
from service.webhooks.dispatch import delivery_lease_s
from service.webhooks.sender import AttemptResult, WebhookSender

# Weight of the newest attempt in a subscription's running latency.
LATENCY_WEIGHT = 0.2
# The most of its in-flight total a process gives one subscription, however fast it answers:
# the rest stays for the others.
MAX_SHARE_OF_IN_FLIGHT = 0.25


@dataclass
class _SubscriptionLoad:
    """One subscription's deliveries held by this process, and how fast its endpoint answers."""

    in_flight: int
    # Since when it has gone without an answer: when it became busy, or its latest answer.
    answered_at: datetime


class SubscriptionAdmission:
    """Decides which leased deliveries this process takes on now and when the others come due
    again; told of every answer (`learn_latency`) and every delivery it is done with (`leave`)."""

    def __init__(
        self,
        per_endpoint: int,
        lease_s: float,
        timeout_s: float,
        max_share: int,
        max_postpone_s: float,
        clock: Clock,
    ) -> None:
        self._per_endpoint = per_endpoint
        self._lease_s = lease_s
        self._timeout_s = timeout_s
        self._max_share = max_share
        self._max_postpone_s = max_postpone_s
        self._clock = clock
        self._load_by_subscription: dict[int, _SubscriptionLoad] = {}
        # Each endpoint's running latency, absent until it has answered this process once; it
        # outlives the endpoint's busy spells, so the next burst starts from it.
        self._latency_by_subscription: dict[int, float] = {}

    @classmethod
    def for_sender(
        cls, settings: Settings, sender: WebhookSender, clock: Clock, max_in_flight: int
    ) -> SubscriptionAdmission:
        return cls(
            sender.max_concurrent_per_endpoint,
            delivery_lease_s(settings),
            settings.webhook_timeout_s,
            max(1, int(max_in_flight * MAX_SHARE_OF_IN_FLIGHT)),
            # By then every attempt this process holds for a subscription has started and ended.
            delivery_lease_s(settings) + settings.webhook_timeout_s,
            clock,
        )

    def share(self, subscription_pk: int, now: datetime) -> int:
        """How many of this subscription's deliveries the process may hold right now."""
        load = self._load_by_subscription.get(subscription_pk)
        latency_s = self._latency_by_subscription.get(subscription_pk)
        unanswered_s = 0.0 if load is None else (now - load.answered_at).total_seconds()
        return subscription_share(
            self._per_endpoint,
            self._lease_s,
            self._timeout_s,
            latency_s,
            unanswered_s,
            self._max_share,
        )

    def admit(self, leased: dict[int, int], now: datetime) -> tuple[list[int], list[int]]:
        """Split leased deliveries (id -> subscription) into those this process takes on now
        and those its subscription has no room for."""
        taken: list[int] = []
        postponed: list[int] = []
        shares: dict[int, int] = {}
        for delivery_id, subscription_pk in sorted(leased.items()):
            if subscription_pk not in shares:
                shares[subscription_pk] = self.share(subscription_pk, now)
            load = self._load_by_subscription.get(subscription_pk)
            if load is None:
                load = self._load_by_subscription[subscription_pk] = _SubscriptionLoad(0, now)
            if load.in_flight >= shares[subscription_pk]:
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
            subscription_pk = leased[delivery_id]
            load = self._load_by_subscription[subscription_pk]
            delay_s = postpone_s(
                load.in_flight,
                self._per_endpoint,
                self._latency_by_subscription.get(subscription_pk, 0.0),
                (now - load.answered_at).total_seconds(),
                self._max_postpone_s,
            )
            groups.setdefault(now + timedelta(seconds=delay_s), []).append(delivery_id)
        return groups

    def learn_latency(self, subscription_pk: int, result: AttemptResult) -> None:
        latency_s = result.latency_ms / 1000
        known_s = self._latency_by_subscription.get(subscription_pk)
        self._latency_by_subscription[subscription_pk] = (
            latency_s if known_s is None else known_s + LATENCY_WEIGHT * (latency_s - known_s)
        )
        self._load_by_subscription[subscription_pk].answered_at = self._clock()

    def leave(self, subscription_pk: int) -> None:
        load = self._load_by_subscription[subscription_pk]
        load.in_flight -= 1
        if load.in_flight <= 0:
            del self._load_by_subscription[subscription_pk]
