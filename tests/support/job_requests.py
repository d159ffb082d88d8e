"""A check job's request as the tests of service/domain/job_input.py and job_csv.py read one: a
stand-in number rule and the checks of an outcome."""

from __future__ import annotations

import re

from service.domain.intake import FieldError
from service.domain.job_input import JobRefused, JobRequest, job_from_json

_DIGITS = re.compile(r"\+?([0-9]{8,15})")
TEST_RULE = "must be 8-15 digits (the tests' rule)"


def number_rule(text: str) -> str | FieldError:
    """A stand-in for the number rule of POST /v1/checks, so these tests hold whatever that
    rule becomes: digits after an optional '+'."""
    match = _DIGITS.fullmatch(text)
    return match.group(1) if match else FieldError("phone_number", TEST_RULE)


def from_json(body: object) -> JobRequest | JobRefused:
    return job_from_json(body, number_rule)


def accepted(outcome: JobRequest | JobRefused) -> JobRequest:
    assert isinstance(outcome, JobRequest), outcome
    return outcome


def refused(outcome: JobRequest | JobRefused, status: int = 422) -> list[FieldError]:
    assert isinstance(outcome, JobRefused), outcome
    assert outcome.status == status
    return list(outcome.errors)


def messages(outcome: JobRequest | JobRefused) -> str:
    return " | ".join(error.describe() for error in refused(outcome))
