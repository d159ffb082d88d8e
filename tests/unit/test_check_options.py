"""The options a check and a check job share (service.domain.check_options): `max_age_s` and
`recheck`, each as one rule with its bounds."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.check_options import (
    MAX_AGE_MAX_S,
    RECHECK_AFTER_DEFAULT_S,
    RECHECK_AFTER_MAX_S,
    RECHECK_AFTER_MIN_S,
    RECHECK_MAX_DEFAULT,
    RECHECK_MAX_LIMIT,
    VERDICTS,
    Recheck,
    check_max_age_s,
    check_max_age_s_text,
    check_recheck,
)
from service.domain.intake import FieldError


def max_age(value: object) -> tuple[int | None, list[FieldError]]:
    errors: list[FieldError] = []
    return check_max_age_s(value, errors), errors


def max_age_text(text: str) -> tuple[int | None, list[FieldError]]:
    errors: list[FieldError] = []
    return check_max_age_s_text(text, errors), errors


def recheck(value: object) -> tuple[Recheck | None, list[FieldError]]:
    errors: list[FieldError] = []
    return check_recheck(value, errors), errors


def test_the_verdicts_are_the_contracts_four_in_its_order() -> None:
    assert VERDICTS == ("live", "unreachable", "dead", "retry")


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


def test_recheck_absent_or_null_is_no_recheck_and_no_error() -> None:
    assert recheck(None) == (None, [])


def test_recheck_with_verdicts_alone_takes_the_defaults() -> None:
    assert recheck({"verdicts": ["retry"]}) == (
        Recheck(verdicts=("retry",), after_s=RECHECK_AFTER_DEFAULT_S, max=RECHECK_MAX_DEFAULT),
        [],
    )
    assert (RECHECK_AFTER_DEFAULT_S, RECHECK_MAX_DEFAULT) == (600, 1)


def test_recheck_as_the_contract_writes_it() -> None:
    value, errors = recheck({"verdicts": ["retry"], "after_s": 600, "max": 1})
    assert errors == []
    assert value is not None
    assert value.as_json() == {"verdicts": ["retry"], "after_s": 600, "max": 1}


def test_recheck_verdicts_are_kept_once_each_in_the_contracts_order() -> None:
    value, _ = recheck({"verdicts": ["retry", "unreachable", "retry", "live"]})
    assert value is not None
    assert value.verdicts == ("live", "unreachable", "retry")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "recheck.verdicts"),
        ({"verdicts": None}, "recheck.verdicts"),
        ({"verdicts": []}, "recheck.verdicts"),
        ({"verdicts": "retry"}, "recheck.verdicts"),
        ({"verdicts": ["maybe"]}, "recheck.verdicts"),
        ({"verdicts": ["Retry"]}, "recheck.verdicts"),
        ({"verdicts": [1]}, "recheck.verdicts"),
        ({"verdicts": [["retry"]]}, "recheck.verdicts"),
        ({"verdicts": ["retry"], "after_s": RECHECK_AFTER_MIN_S - 1}, "recheck.after_s"),
        ({"verdicts": ["retry"], "after_s": RECHECK_AFTER_MAX_S + 1}, "recheck.after_s"),
        ({"verdicts": ["retry"], "after_s": 600.5}, "recheck.after_s"),
        ({"verdicts": ["retry"], "after_s": "600"}, "recheck.after_s"),
        ({"verdicts": ["retry"], "max": 0}, "recheck.max"),
        ({"verdicts": ["retry"], "max": RECHECK_MAX_LIMIT + 1}, "recheck.max"),
        ({"verdicts": ["retry"], "max": True}, "recheck.max"),
        ({"verdicts": ["retry"], "every": 5}, "recheck.every"),
    ],
)
def test_a_broken_recheck_is_refused_naming_the_field(body: dict[str, Any], field: str) -> None:
    value, errors = recheck(body)
    assert value is None
    assert [error.field for error in errors] == [field]


@pytest.mark.parametrize("value", [["retry"], "retry", 600, True])
def test_a_recheck_that_is_not_an_object_is_refused(value: object) -> None:
    result, errors = recheck(value)
    assert result is None
    assert [error.field for error in errors] == ["recheck"]


def test_every_broken_rule_of_a_recheck_is_reported_at_once() -> None:
    value, errors = recheck({"verdicts": ["maybe"], "after_s": 1, "max": 9, "x": 1})
    assert value is None
    assert [error.field for error in errors] == [
        "recheck.x",
        "recheck.verdicts",
        "recheck.after_s",
        "recheck.max",
    ]


def test_an_unknown_verdict_is_named_in_the_message() -> None:
    _, errors = recheck({"verdicts": ["retry", "maybe", 7]})
    assert errors[0].message == (
        "must be a non-empty array of verdicts (live, unreachable, dead, retry); not a verdict: "
        '"maybe", a number'
    )


def test_recheck_bounds_are_a_minute_to_a_day_and_one_to_three() -> None:
    assert (RECHECK_AFTER_MIN_S, RECHECK_AFTER_MAX_S, RECHECK_MAX_LIMIT) == (60, 86_400, 3)
    for after_s in (RECHECK_AFTER_MIN_S, RECHECK_AFTER_MAX_S):
        for most in (1, RECHECK_MAX_LIMIT):
            value, errors = recheck({"verdicts": ["dead"], "after_s": after_s, "max": most})
            assert errors == []
            assert value == Recheck(("dead",), after_s, most)


recheck_values = st.builds(
    Recheck,
    verdicts=st.sets(st.sampled_from(VERDICTS), min_size=1).map(
        lambda chosen: tuple(v for v in VERDICTS if v in chosen)
    ),
    after_s=st.integers(RECHECK_AFTER_MIN_S, RECHECK_AFTER_MAX_S),
    max=st.integers(1, RECHECK_MAX_LIMIT),
)


@given(recheck_values)
def test_a_recheck_reads_back_from_its_json_unchanged(value: Recheck) -> None:
    assert recheck(value.as_json()) == (value, [])


@given(recheck_values, st.sampled_from((*VERDICTS, None)), st.integers(0, RECHECK_MAX_LIMIT + 1))
def test_another_check_only_for_a_chosen_verdict_and_while_under_max(
    value: Recheck, verdict: str | None, done: int
) -> None:
    assert value.wants_another(verdict, done) == (verdict in value.verdicts and done < value.max)


def test_a_recheck_of_retry_once_wants_exactly_one_more_check() -> None:
    value = Recheck(("retry",), 600, 1)
    assert value.wants_another("retry", 0)
    assert not value.wants_another("retry", 1)
    assert not value.wants_another("live", 0)
    assert not value.wants_another(None, 0)
