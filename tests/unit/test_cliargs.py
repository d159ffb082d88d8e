"""The argparse value types of service/cliargs.py: what a subcommand's option accepts."""

from __future__ import annotations

import argparse

import pytest

from service.cliargs import positive_float


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
