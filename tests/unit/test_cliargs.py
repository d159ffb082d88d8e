"""The argparse value types of service/cliargs.py: what a subcommand's option accepts."""

from __future__ import annotations

import argparse

import pytest

from service.cliargs import lag_target_value, limit_value, positive_float, positive_int


def test_a_positive_number_is_read_as_a_float() -> None:
    assert positive_float("2.5") == 2.5
    assert positive_float("3") == 3.0


@pytest.mark.parametrize(
    ("text", "reason"),
    [("0", "must be greater than 0"), ("-1", "must be greater than 0"), ("soon", "not a number")],
)
def test_zero_a_negative_or_a_word_is_refused_with_its_reason(text: str, reason: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=reason):
        positive_float(text)


def test_a_whole_number_of_at_least_one_is_read_as_an_int() -> None:
    assert positive_int("1") == 1
    assert positive_int("12") == 12


@pytest.mark.parametrize(
    ("text", "reason"),
    [("0", "must be at least 1"), ("-2", "must be at least 1"), ("1.5", "whole number")],
)
def test_a_count_below_one_or_not_whole_is_refused_with_its_reason(text: str, reason: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=reason):
        positive_int(text)


def test_a_limit_is_a_number_off_or_the_setting() -> None:
    assert limit_value("5") == 5
    assert limit_value("off") == 0
    assert limit_value("default") is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [("0", "at least 1"), ("-3", "at least 1"), ("lots", "whole number, `off` or `default`")],
)
def test_a_limit_that_is_no_number_above_zero_off_or_default_is_refused(
    text: str, reason: str
) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=reason):
        limit_value(text)


def test_a_lag_target_is_seconds_or_the_setting() -> None:
    assert lag_target_value("2.5") == 2.5
    assert lag_target_value("default") is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("0", "more than 0"),
        ("-1", "more than 0"),
        ("inf", "more than 0"),
        ("nan", "more than 0"),
        ("soon", "seconds or `default`"),
        ("off", "seconds or `default`"),
    ],
)
def test_a_lag_target_of_no_positive_finite_seconds_is_refused(text: str, reason: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=reason):
        lag_target_value(text)
