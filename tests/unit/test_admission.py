"""SubscriptionAdmission (service/webhooks/admission.py): each subscription's share of the
deliveries one process holds, the hand-back of the rest, and a share that follows its endpoint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.webhooks.admission import SubscriptionAdmission
from service.webhooks.sender import AttemptResult

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
SLOW, FAST = 7, 8


def admission() -> SubscriptionAdmission:
    # Two concurrent attempts per endpoint, a 10 s lease, 15 s timeouts, at most 40 held.
    return SubscriptionAdmission(
        per_endpoint=2,
        lease_s=10.0,
        timeout_s=15.0,
        max_share=40,
        max_postpone_s=25.0,
        clock=lambda: NOW,
    )


def answered(latency_ms: int) -> AttemptResult:
    return AttemptResult(
        at=NOW,
        status=200,
        latency_ms=latency_ms,
        error=None,
        response_excerpt=None,
        retry_after=None,
    )


def test_a_subscription_takes_its_share_and_hands_the_rest_back() -> None:
    gate = admission()
    leased = dict.fromkeys(range(1, 21), SLOW)

    share = gate.share(SLOW, NOW)
    taken, postponed = gate.admit(leased, NOW)

    assert share == 2  # an endpoint not heard from: one round of whole timeouts
    assert taken == [1, 2]
    assert postponed == list(range(3, 21))


def test_a_full_subscription_does_not_hold_back_another() -> None:
    gate = admission()
    leased = {**dict.fromkeys(range(1, 11), SLOW), 11: FAST}

    taken, postponed = gate.admit(leased, NOW)

    assert 11 in taken
    assert 11 not in postponed


def test_the_handed_back_deliveries_come_due_together_later() -> None:
    gate = admission()
    leased = dict.fromkeys(range(1, 11), SLOW)
    _, postponed = gate.admit(leased, NOW)

    groups = gate.postponements(postponed, leased, NOW)

    [(due_at, ids)] = groups.items()
    assert sorted(ids) == postponed
    assert NOW < due_at <= NOW + timedelta(seconds=25.0)


def test_a_fast_endpoint_earns_a_larger_share_and_leaving_frees_room() -> None:
    gate = admission()
    leased = dict.fromkeys(range(1, 41), FAST)
    taken, _ = gate.admit(leased, NOW)
    before = gate.share(FAST, NOW)

    for _ in taken:
        gate.learn_latency(FAST, answered(latency_ms=50))
    after = gate.share(FAST, NOW)
    for _ in taken:
        gate.leave(FAST)
    retaken, _ = gate.admit(leased, NOW)

    assert before == 2
    assert after > before
    assert len(retaken) == after
