"""The daily check budget's rules (service/domain/budgets.py): the UTC day of an instant, the wait
until the next one, the limit that applies and whether checks fit."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.budgets import (
    budget_applies,
    budget_exhausted_detail,
    daily_check_limit,
    fits,
    ledger_kept_from,
    next_utc_midnight,
    seconds_to_next_utc_midnight,
    utc_day,
)

MEXICO_CITY = timezone(timedelta(hours=-6))
instants = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from([UTC, MEXICO_CITY, timezone(timedelta(hours=5, minutes=30))]),
)


def test_an_instant_counts_in_its_utc_day_whatever_its_time_zone() -> None:
    # 20:00 in Mexico City on the 7th is 02:00 UTC on the 8th.
    assert utc_day(datetime(2026, 12, 7, 20, 0, tzinfo=MEXICO_CITY)) == date(2026, 12, 8)
    assert utc_day(datetime(2026, 12, 7, 23, 59, 59, tzinfo=UTC)) == date(2026, 12, 7)
    assert utc_day(datetime(2026, 12, 8, 0, 0, tzinfo=UTC)) == date(2026, 12, 8)


def test_the_next_midnight_is_the_start_of_the_next_utc_day() -> None:
    assert next_utc_midnight(datetime(2026, 12, 31, 12, 0, tzinfo=UTC)) == datetime(
        2027, 1, 1, tzinfo=UTC
    )
    # Exactly at midnight, the day has just begun: its budget lasts until the next one.
    assert next_utc_midnight(datetime(2026, 12, 8, tzinfo=UTC)) == datetime(2026, 12, 9, tzinfo=UTC)


def test_the_ledger_keeps_the_utc_day_of_now_and_the_two_before_it() -> None:
    # 20:00 in Mexico City on the 7th is the 8th in UTC: the 6th, 7th and 8th are kept.
    assert ledger_kept_from(datetime(2026, 12, 7, 20, 0, tzinfo=MEXICO_CITY)) == date(2026, 12, 6)
    assert ledger_kept_from(datetime(2027, 1, 1, 0, 0, tzinfo=UTC)) == date(2026, 12, 30)


@given(instants)
def test_a_give_back_just_after_midnight_finds_the_day_it_counted_on(now: datetime) -> None:
    counted_on = utc_day(now - timedelta(minutes=10))
    assert ledger_kept_from(now) < counted_on


def test_retry_after_is_whole_seconds_rounded_up_and_at_least_one() -> None:
    assert seconds_to_next_utc_midnight(datetime(2026, 12, 7, 23, 0, tzinfo=UTC)) == 3600
    almost = datetime(2026, 12, 7, 23, 59, 59, 100_000, tzinfo=UTC)
    assert seconds_to_next_utc_midnight(almost) == 1
    last_instant = datetime(2026, 12, 7, 23, 59, 59, 999_999, tzinfo=UTC)
    assert seconds_to_next_utc_midnight(last_instant) == 1
    assert seconds_to_next_utc_midnight(datetime(2026, 12, 8, tzinfo=UTC)) == 86400


@given(instants)
def test_retrying_after_retry_after_always_lands_in_the_next_day(now: datetime) -> None:
    wait = seconds_to_next_utc_midnight(now)
    assert 1 <= wait <= 86400
    assert utc_day(now + timedelta(seconds=wait)) == utc_day(now) + timedelta(days=1)
    # And not a whole second later than needed.
    assert utc_day(now + timedelta(seconds=wait - 1)) == utc_day(now) or wait == 1


@given(instants)
def test_the_next_midnight_is_after_now_and_within_a_day(now: datetime) -> None:
    midnight = next_utc_midnight(now)
    assert now < midnight <= now + timedelta(days=1)
    assert (midnight.hour, midnight.minute, midnight.second, midnight.microsecond) == (0, 0, 0, 0)


@pytest.mark.parametrize(
    ("own", "setting", "limit"),
    [(None, 0, 0), (None, 500, 500), (20, 500, 20), (20, 0, 20), (0, 500, 0), (0, 0, 0)],
)
def test_the_clients_own_limit_wins_over_the_setting_and_zero_means_none(
    own: int | None, setting: int, limit: int
) -> None:
    assert daily_check_limit(own, setting) == limit


def test_checks_are_counted_only_under_a_limit() -> None:
    assert not budget_applies(0)
    assert budget_applies(1)


@given(
    counted=st.integers(min_value=0, max_value=1000),
    wanted=st.integers(min_value=1, max_value=1000),
    limit=st.integers(min_value=1, max_value=1000),
)
def test_checks_fit_exactly_while_the_day_stays_within_the_limit(
    counted: int, wanted: int, limit: int
) -> None:
    assert fits(counted, wanted, limit) == (counted + wanted <= limit)


@given(counted=st.integers(min_value=0), wanted=st.integers(min_value=0))
def test_without_a_limit_everything_fits(counted: int, wanted: int) -> None:
    assert fits(counted, wanted, 0)


def test_the_refusal_says_the_limit_and_when_it_is_whole_again() -> None:
    detail = budget_exhausted_detail(100, 3600)
    assert "100 upstream checks per UTC day" in detail
    assert "in 3600 s" in detail
    assert "1 upstream check per" in budget_exhausted_detail(1, 5)
