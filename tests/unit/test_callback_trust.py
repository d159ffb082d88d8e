"""Callback trust: counts, decay, the tolerance with its hysteresis, and the safety net it picks."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.answers import Outcome, OutcomeKind
from service.domain.backoff import BackoffPolicy
from service.domain.callback_trust import (
    LATE_CALLBACK_GRACE_S,
    LATE_MARGIN_S,
    MIN_MISSED_TO_DISTRUST,
    OUTAGE_MISSES,
    RECOVERY_HEARD,
    CallbackRecord,
    outage_after,
    still_trusted,
)
from service.domain.polling import PollPolicy, TaskSnapshot, decide_after_poll
from service.domain.schedule import (
    SAFETY_NET_BUDGET,
    SAFETY_NET_P,
    PollSchedule,
    SchedulePolicy,
    adaptive_delay,
    safety_net_delay,
)
from tests.support.estimates import uniform_estimate

TOLERANCE = 0.05
BACKOFF = BackoffPolicy(initial_s=2.0, max_s=300.0)
BACKOFF_POLICY = SchedulePolicy(PollSchedule.BACKOFF, min_completions=50.0)
UNIFORM, END = uniform_estimate(up_to_bin=40)
counts = st.floats(min_value=0, max_value=1e6, allow_nan=False)


# --- the record ---------------------------------------------------------------------------------


def test_a_client_never_counted_is_trusted() -> None:
    record = CallbackRecord()
    assert record.trusted
    assert record.missed_share == 0.0
    assert still_trusted(record, TOLERANCE)


@pytest.mark.parametrize(
    ("heard", "missed", "trusted"),
    [
        (0, 2, True),  # a handful of misses is not a pattern, whatever the share
        (0, MIN_MISSED_TO_DISTRUST, False),
        (0, 3, False),
        (57, 3, True),  # 5% missed: at the tolerance, still trusted
        (56, 3, False),  # just over it
        (1000, 49, True),
        (1000, 60, False),
    ],
)
def test_trust_is_lost_past_the_tolerance_with_enough_misses(
    heard: float, missed: float, trusted: bool
) -> None:
    assert CallbackRecord().after(heard, missed, TOLERANCE).lossy is not trusted


@pytest.mark.parametrize(
    ("heard", "missed", "trusted"),
    [
        (90, 10, False),  # 10% missed: still untrusted
        (96, 4, False),  # 4%: under the tolerance but not under half of it
        (975, 25, True),  # 2.5%: half the tolerance, trusted again
        (100, 0, True),
    ],
)
def test_trust_comes_back_only_under_half_the_tolerance(
    heard: float, missed: float, trusted: bool
) -> None:
    untrusted = CallbackRecord(0, 0, lossy=True)
    assert untrusted.after(heard, missed, TOLERANCE).trusted is trusted


@given(heard=counts, missed=counts, was_trusted=st.booleans())
def test_the_band_between_the_thresholds_keeps_the_state(
    heard: float, missed: float, was_trusted: bool
) -> None:
    record = CallbackRecord(heard, missed, lossy=not was_trusted)
    share = record.missed_share
    if TOLERANCE / 2 < share <= TOLERANCE:
        assert still_trusted(record, TOLERANCE) is was_trusted
    if share > TOLERANCE and missed >= MIN_MISSED_TO_DISTRUST:
        assert not still_trusted(record, TOLERANCE)
    if share <= TOLERANCE / 2:
        assert still_trusted(record, TOLERANCE)


@given(heard=counts, missed=counts, elapsed=st.floats(min_value=0, max_value=1e6))
def test_decay_keeps_the_share_and_the_state(heard: float, missed: float, elapsed: float) -> None:
    record = CallbackRecord(heard, missed, lossy=True, outage=True, streak=1)
    later = record.decayed(elapsed, half_life_s=3600.0)
    assert (later.lossy, later.outage, later.streak) == (True, True, 1)
    assert later.heard <= heard
    assert later.missed <= missed
    if later.heard + later.missed > 1e-9:
        assert later.missed_share == pytest.approx(record.missed_share, abs=1e-9)


def test_old_misses_fade_so_trust_can_come_back() -> None:
    lossy = CallbackRecord().after(0, 10, TOLERANCE)
    assert not lossy.trusted
    # Ten half-lives later the ten misses weigh about 0.01: a hundred heard callbacks win.
    healed = lossy.decayed(36000.0, 3600.0).after(100, 0, TOLERANCE)
    assert healed.trusted


def test_the_tolerance_bounds_are_checked_and_the_extremes_mean_what_they_say() -> None:
    with pytest.raises(ValueError, match="tolerance"):
        still_trusted(CallbackRecord(), 1.5)
    with pytest.raises(ValueError, match="not negative"):
        CallbackRecord(-1, 0)
    with pytest.raises(ValueError, match="not negative"):
        CallbackRecord(streak=-1)
    with pytest.raises(ValueError, match="not negative"):
        outage_after(False, 0, 0.0, -1, 0, 1.0)
    # 1: callbacks are always trusted (the sparse net whatever happens, no outage either).
    assert CallbackRecord().after(0, 1000, 1.0).trusted
    assert CallbackRecord(outage=True, streak=1).after(0, 1, 1.0).trusted
    # 0: three misses are enough to stop trusting them.
    assert not CallbackRecord().after(1000, 3, 0.0).trusted


# --- the outage ----------------------------------------------------------------------------------

# Batches of completions a write-back may count: (heard, missed).
BATCHES = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 0), (0, 3), (3, 1)]


def expected_outage(batches: list[tuple[int, int]]) -> bool:
    """The outage rule read off the whole history: walking it, an outage begins at the batch
    whose misses bring those since the last batch that heard any (or since the last outage ended)
    to OUTAGE_MISSES, and ends at the batch whose heard callbacks bring those since it began to
    RECOVERY_HEARD."""
    in_outage, began, quiet_since = False, 0, 0
    for index, (heard, _) in enumerate(batches):
        if in_outage:
            if sum(h for h, _ in batches[began + 1 : index + 1]) >= RECOVERY_HEARD:
                in_outage, quiet_since = False, index + 1
        elif heard > 0:
            quiet_since = index + 1
        elif sum(m for _, m in batches[quiet_since : index + 1]) >= OUTAGE_MISSES:
            in_outage, began = True, index
    return in_outage


@pytest.mark.parametrize("length", [1, 2, 3, 4, 5])
def test_every_history_of_batches_gives_the_outage_the_rule_says(length: int) -> None:
    """Exhaustive over every history of up to five batches of BATCHES (37,448 of them): the
    record's outage is the rule's; the loss share counts every heard callback and the misses of
    batches counted outside an outage; trusted is neither lossy nor in an outage."""
    for history in itertools.product(BATCHES, repeat=length):
        record = CallbackRecord()
        counted_missed = 0
        for heard, missed in history:
            if not record.outage:
                counted_missed += missed
            record = record.after(heard, missed, TOLERANCE, late_wait_s=0.0)
        assert record.outage is expected_outage(list(history)), history
        assert record.heard == sum(h for h, _ in history)
        assert record.missed == counted_missed
        assert record.trusted is (not record.lossy and not record.outage)


def test_three_misses_in_a_row_are_an_outage_once_the_first_is_old_enough() -> None:
    healthy = CallbackRecord(heard=5000.0).after(10, 0, TOLERANCE)
    assert healthy.trusted
    assert healthy.late_wait_s == LATE_MARGIN_S
    once = healthy.after(0, 1, TOLERANCE).decayed(0.5, 600).after(0, 1, TOLERANCE)
    assert once.trusted
    assert once.streak == 2
    # The third miss half a second after the first: a callback a second late could still come.
    early = once.after(0, 1, TOLERANCE)
    assert early.trusted
    assert early.streak == 3
    assert early.streak_age_s == 0.5
    stopped = once.decayed(0.5, 600).after(0, 1, TOLERANCE)
    # The share (3 in 5,013) is far from the tolerance: the outage alone stops the trust.
    assert stopped.outage
    assert not stopped.lossy
    assert not stopped.trusted


def test_a_heard_callback_breaks_the_run() -> None:
    record = CallbackRecord(heard=100.0).after(0, 2, TOLERANCE).after(1, 0, TOLERANCE)
    assert record.streak == 0
    assert record.decayed(5.0, 600).after(0, 2, TOLERANCE).trusted


def test_a_late_callback_breaks_the_run_and_teaches_the_wait() -> None:
    run = CallbackRecord(heard=100.0, missed=0.0).after(0, 2, TOLERANCE)
    late = run.decayed(4.0, 600).heard_late(4.0)
    assert late.streak == 0
    assert late.heard == pytest.approx(101.0, rel=0.01)
    assert late.missed == pytest.approx(1.0, rel=0.01)
    assert late.late_wait_s == pytest.approx(4.0 + LATE_MARGIN_S, rel=0.01)
    # Three misses in a row, the first 4 s old: a 4 s late callback could still come.
    misses = late.after(0, 2, TOLERANCE).decayed(4.0, 600).after(0, 1, TOLERANCE)
    assert misses.trusted
    assert not misses.decayed(1.5, 600).after(0, 1, TOLERANCE).trusted
    # Never longer than the grace, and forgotten as the counts decay.
    assert CallbackRecord().heard_late(60.0).late_wait_s == LATE_CALLBACK_GRACE_S
    assert late.decayed(6000.0, 600).late_wait_s == pytest.approx(LATE_MARGIN_S, abs=0.01)


def test_late_callbacks_end_an_outage() -> None:
    stopped = CallbackRecord(outage=True)
    assert stopped.heard_late(2.0).outage
    assert not stopped.heard_late(2.0).heard_late(2.0).outage


def test_two_heard_callbacks_end_an_outage_and_its_misses_leave_the_share_as_it_was() -> None:
    stopped = CallbackRecord(heard=1000.0, missed=10.0).after(0, 3, TOLERANCE, late_wait_s=0.0)
    assert stopped.outage
    # A long break: a thousand checks answered without their callback, found by polling.
    during = stopped.after(0, 1000, TOLERANCE).after(1, 500, TOLERANCE)
    assert during.outage
    assert during.missed == 13.0
    healed = during.after(1, 0, TOLERANCE)
    assert healed.trusted
    assert not healed.outage
    assert healed.streak == 0
    assert healed.missed_share == pytest.approx(13 / 1015)


def test_a_path_broken_from_the_start_is_never_relied_on() -> None:
    record = CallbackRecord()
    for _ in range(50):
        record = record.decayed(1.0, 600).after(0, 1, TOLERANCE)
        if record.missed >= OUTAGE_MISSES:
            assert not record.trusted
    assert record.outage
    assert record.lossy


@given(
    outage=st.booleans(),
    streak=st.integers(0, 5),
    age=st.floats(0, 20),
    heard=st.integers(0, 10),
    missed=st.integers(0, 10),
)
def test_the_streak_stays_below_its_threshold_unless_it_waits(
    outage: bool, streak: int, age: float, heard: int, missed: int
) -> None:
    after, left, left_age = outage_after(outage, streak, age, heard, missed, 1.0)
    if outage or heard > 0:
        assert 0 <= left < (RECOVERY_HEARD if after else OUTAGE_MISSES)
    if not outage and heard > 0:
        assert (after, left, left_age) == (False, 0, 0.0)
    if after and not outage:
        assert streak > 0
        assert streak + missed >= OUTAGE_MISSES
        assert age >= 1.0
    if left >= OUTAGE_MISSES:  # a run waiting for its first miss to be old enough
        assert not after
        assert left_age < 1.0


# --- the safety net ------------------------------------------------------------------------------


def test_the_cold_safety_net_starts_at_its_first_age_then_doubles_the_age() -> None:
    def delay(age_s: float) -> float:
        return safety_net_delay(BACKOFF_POLICY, BACKOFF, None, age_s=age_s, first_s=30, rand=0.0)

    assert delay(0.0) == 30.0
    assert delay(10.0) == 20.0
    assert delay(30.0) == 30.0  # polled at 30 s: next at 60 s
    assert delay(200.0) == 200.0
    assert delay(1000.0) == 300.0  # capped by PHONEBRIDGE_POLL_MAX_S


@pytest.mark.parametrize("age_fraction", [0.0, 0.3, 0.8])
def test_a_warm_safety_net_is_placed_from_the_learnt_completion_times(
    age_fraction: float,
) -> None:
    """From the submit on (age 0), not from a fixed first age: on uniform answers over
    (0, END], an answer missing at age a has arrived by age t with probability
    (t - a) / (END - a); the net polls where that is SAFETY_NET_P = 1 / (1 + the budget)."""
    age_s = age_fraction * END
    wide = BackoffPolicy(initial_s=1e-6, max_s=1e9)
    delay = safety_net_delay(BACKOFF_POLICY, wide, UNIFORM, age_s=age_s, first_s=30, rand=0.0)
    assert pytest.approx(1 / (1 + SAFETY_NET_BUDGET)) == SAFETY_NET_P
    assert delay == pytest.approx(SAFETY_NET_P * (END - age_s), rel=1e-6)


@given(age=st.floats(min_value=0, max_value=2 * END), rand=st.floats(0, 0.999))
def test_the_safety_net_is_never_denser_than_the_adaptive_schedule(age: float, rand: float) -> None:
    """Trusting the callback only ever makes polls sparser than the learnt schedule's (at the
    default budget of 3 calls per task, p = 1/2), and they stay within [initial_s, max_s]."""
    net = safety_net_delay(BACKOFF_POLICY, BACKOFF, UNIFORM, age_s=age, first_s=30, rand=rand)
    adaptive = adaptive_delay(UNIFORM, age, SchedulePolicy().target_p, BACKOFF, rand)
    assert BACKOFF.initial_s <= net <= BACKOFF.max_s
    assert net >= adaptive - 1e-9


# --- the decision ------------------------------------------------------------------------------

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PENDING = Outcome(OutcomeKind.PENDING, "PENDING", "pending", request_id="TID1")
POLICY = PollPolicy(BACKOFF, schedule=BACKOFF_POLICY, safety_net_first_s=30.0)


def next_in(task: TaskSnapshot) -> float:
    decision = decide_after_poll(task, PENDING, NOW, POLICY, 0.5)
    assert decision.next_poll_at is not None
    return (decision.next_poll_at - NOW).total_seconds()


def test_a_trusted_callback_puts_the_task_on_the_safety_net() -> None:
    task = TaskSnapshot(
        1, NOW + timedelta(hours=20), submitted_at=NOW - timedelta(seconds=30), safety_net=True
    )
    assert next_in(task) == 30.0  # the age doubles: 60 s


def test_a_submitted_check_keeps_a_registered_tasks_steps() -> None:
    """The submit was the first call: a check's first poll (at 2 s) is followed by 4 s, as a
    registered task's second poll is; without counting the submit it would be 2 s again."""
    far = NOW + timedelta(hours=20)
    submitted = TaskSnapshot(0, far, submitted_at=NOW - timedelta(seconds=2), calls_before=1)
    registered = TaskSnapshot(1, far, submitted_at=NOW - timedelta(seconds=2))
    assert next_in(submitted) == next_in(registered) == 4.0
