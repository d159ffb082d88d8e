"""The options a check and a check job share (service.domain.check_options): `max_age_s`, one
rule with its bounds. (`recheck`'s rule is service.domain.rechecks: tests/unit/test_rechecks.py.)"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.check_options import (
    MAX_AGE_MAX_S,
    check_max_age_s,
    check_max_age_s_text,
)
from service.domain.intake import FieldError


def max_age(value: object) -> tuple[int | None, list[FieldError]]:
    errors: list[FieldError] = []
    return check_max_age_s(value, errors), errors


def max_age_text(text: str) -> tuple[int | None, list[FieldError]]:
    errors: list[FieldError] = []
    return check_max_age_s_text(text, errors), errors


def test_max_age_absent_or_null_is_zero() -> None:
    assert max_age(None) == (0, [])


def test_max_age_range_is_zero_to_thirty_days() -> None:
    assert MAX_AGE_MAX_S == 2_592_000
    assert max_age(0) == (0, [])
    assert max_age(MAX_AGE_MAX_S) == (MAX_AGE_MAX_S, [])


@given(st.integers(min_value=0, max_value=MAX_AGE_MAX_S))
def test_max_age_within_the_range_is_kept(seconds: int) -> None:
    assert max_age(seconds) == (seconds, [])
    assert max_age_text(str(seconds)) == (seconds, [])


@given(st.integers().filter(lambda n: not 0 <= n <= MAX_AGE_MAX_S))
def test_max_age_outside_the_range_is_refused_naming_the_range(seconds: int) -> None:
    value, errors = max_age(seconds)
    assert value is None
    assert errors == [FieldError("max_age_s", "must be a whole number from 0 to 2592000")]


@pytest.mark.parametrize(
    ("value", "found"),
    [
        (True, "a boolean"),
        (600.0, "a number with a fraction or exponent"),
        (1.5, "a number with a fraction or exponent"),
        ("600", "a string"),
        ([600], "an array"),
        ({"s": 600}, "an object"),
    ],
)
def test_max_age_that_is_not_a_json_integer_is_refused_naming_what_it_is(
    value: object, found: str
) -> None:
    assert max_age(value) == (
        None,
        [FieldError("max_age_s", f"must be a whole number from 0 to 2592000, not {found}")],
    )


@pytest.mark.parametrize(
    "text", ["", "-1", "+5", "1.5", "1e3", " 60", "60 ", "0x10", "sixty", "2592001", "9" * 40]
)
def test_max_age_query_text_must_be_decimal_digits_in_the_range(text: str) -> None:
    value, errors = max_age_text(text)
    assert value is None
    assert [error.field for error in errors] == ["query.max_age_s"]


def test_the_field_name_is_the_callers() -> None:
    errors: list[FieldError] = []
    check_max_age_s(-1, errors, field="body.max_age_s")
    assert errors[0].field == "body.max_age_s"
