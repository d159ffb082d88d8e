"""The portal screenshots' sample jobs (tests/support/screenshots.py, shown in the README): every
row is a Mexican or Colombian number but the one line meant to be rejected, which is refused for
being no number (not, as 555-0100 was, for being a Brazilian one)."""

from __future__ import annotations

from service.domain.phone_numbers import (
    DEFAULT_CHECK_COUNTRIES,
    NumberRefusal,
    NumberRule,
    PhoneNumber,
    parse_phone_number,
)
from tests.support.screenshots import SAMPLE_JOB_REJECTED, SAMPLE_JOB_ROWS


def test_every_sample_row_but_the_rejected_one_is_a_number_of_mexico_or_colombia() -> None:
    for written, reference in SAMPLE_JOB_ROWS:
        if (written, reference) == SAMPLE_JOB_REJECTED:
            continue
        number = parse_phone_number(written, DEFAULT_CHECK_COUNTRIES)
        assert isinstance(number, PhoneNumber), (written, number)
        assert number.region in ("MX", "CO")


def test_the_rejected_row_is_refused_for_being_no_number() -> None:
    assert SAMPLE_JOB_REJECTED in SAMPLE_JOB_ROWS
    refused = parse_phone_number(SAMPLE_JOB_REJECTED[0], DEFAULT_CHECK_COUNTRIES)
    assert isinstance(refused, NumberRefusal)
    assert refused.rule is NumberRule.LETTERS
