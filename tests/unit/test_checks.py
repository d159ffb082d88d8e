"""The pure rules of a submitted check: the body, the phone number and its mask, the
Idempotency-Key, and what each upstream answer to a submit means."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from service.domain.answers import RawAnswer, TransportError
from service.domain.checks import (
    SUBMIT_OUTCOME_UNKNOWN,
    UPSTREAM_UNAVAILABLE,
    CheckRequest,
    SubmitKind,
    classify_submit,
    valid_idempotency_key,
    validate_check,
)
from service.domain.intake import Rejection
from service.domain.phone_numbers import DEFAULT_CHECK_COUNTRIES

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
KEY = b"number-digest-key-of-32-bytes..."


def answer(http: int, **body: object) -> RawAnswer:
    return RawAnswer(status_code=http, body=json.dumps(body).encode())


def checked(body: object) -> CheckRequest:
    request = validate_check(body, DEFAULT_CHECK_COUNTRIES)
    assert isinstance(request, CheckRequest), request
    return request


def rejected(body: object) -> Rejection:
    rejection = validate_check(body, DEFAULT_CHECK_COUNTRIES)
    assert isinstance(rejection, Rejection), rejection
    return rejection


# --- the body (the number's own rules: tests/unit/test_phone_numbers.py) ----------------------


def test_a_valid_body_holds_the_normalised_number_and_compact_metadata() -> None:
    request = checked({"phone_number": "+52 1 55 1234 5678", "metadata": {"order": 42}})
    assert request.number.digits == "525512345678"
    assert request.masked == "52******5678"
    assert request.metadata_json == '{"order":42}'


def test_metadata_defaults_to_an_empty_object() -> None:
    assert checked({"phone_number": "525512345678"}).metadata_json == "{}"


def test_a_refused_number_names_its_rule_and_never_the_number() -> None:
    rejection = rejected({"phone_number": "+1 415 555 0123"})
    assert rejection.errors[0].field == "phone_number"
    assert "US (+1)" in rejection.detail
    assert "4155550123" not in rejection.detail


def test_the_allowed_countries_are_the_callers() -> None:
    body = {"phone_number": "+57 300 123 4567"}
    assert isinstance(validate_check(body, ("CO",)), CheckRequest)
    assert isinstance(validate_check(body, ("MX",)), Rejection)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "phone_number"),
        ({"phone_number": 525512341234}, "phone_number"),
        ({"phone_number": "525512341234", "callback": "x"}, "callback"),
        ({"phone_number": "525512341234", "metadata": []}, "metadata"),
    ],
)
def test_every_broken_rule_names_its_field(body: dict[str, object], field: str) -> None:
    assert field in {error.field for error in rejected(body).errors}


def test_a_number_and_metadata_both_broken_are_both_reported() -> None:
    rejection = rejected({"phone_number": "+52 55", "metadata": [1]})
    assert {error.field for error in rejection.errors} == {"phone_number", "metadata"}


def test_a_body_that_is_not_an_object_is_rejected() -> None:
    rejected(["525512341234"])


def test_the_fingerprint_is_the_normalised_numbers_and_holds_no_number() -> None:
    one = checked({"phone_number": "525512341234"})
    same_number = checked({"phone_number": "+52 1 55 1234 1234"})
    other_number = checked({"phone_number": "525512341235"})
    other_metadata = checked({"phone_number": "525512341234", "metadata": {"a": 1}})
    assert one.fingerprint(KEY) == same_number.fingerprint(KEY)
    assert (
        len({one.fingerprint(KEY), other_number.fingerprint(KEY), other_metadata.fingerprint(KEY)})
        == 3
    )
    assert b"525512341234" not in one.fingerprint(KEY)


def test_the_fingerprint_depends_on_the_deployments_key() -> None:
    # Without the key, a stored fingerprint cannot be matched against guessed numbers.
    request = checked({"phone_number": "525512341234"})
    assert request.fingerprint(KEY) != request.fingerprint(b"another-key-of-thirty-two-bytes.")


# --- the Idempotency-Key ---------------------------------------------------------------------


@pytest.mark.parametrize("key", ["a", "order-42", "x" * 255, " spaced key ", "~!@#$%^&*()"])
def test_printable_ascii_keys_of_1_to_255_characters_are_valid(key: str) -> None:
    assert valid_idempotency_key(key)


@pytest.mark.parametrize("key", ["", "x" * 256, "naïve", "tab\there", "line\nbreak", "\x7f"])
def test_other_keys_are_invalid(key: str) -> None:
    assert not valid_idempotency_key(key)


# --- upstream's answer -----------------------------------------------------------------------


def test_a_task_id_is_a_pending_check() -> None:
    outcome = classify_submit(
        answer(200, status="OK", task_id="T-9", request_id="TID1"), NOW, surely_not_sent=False
    )
    assert outcome.kind is SubmitKind.PENDING
    assert outcome.task_id == "T-9"
    assert outcome.request_id == "TID1"
    assert outcome.reached_upstream


def test_a_result_is_a_check_finished_at_once() -> None:
    raw = answer(
        200,
        status="OK",
        result={"phone_number": "5255****", "phone_status": "busy"},
        request_id="TID2",
    )
    outcome = classify_submit(raw, NOW, surely_not_sent=False)
    assert outcome.kind is SubmitKind.FINISHED
    assert outcome.result is not None
    assert outcome.result.phone_status == "busy"


def test_invalid_argument_is_a_refusal_with_upstreams_reason() -> None:
    raw = answer(400, status="INVALID_ARGUMENT", reason="argument 'phone_number': invalid")
    outcome = classify_submit(raw, NOW, surely_not_sent=False)
    assert outcome.kind is SubmitKind.REJECTED
    assert not outcome.reached_upstream
    assert "phone_number" in outcome.message


@pytest.mark.parametrize(
    ("http", "status"),
    [
        (401, "UNAUTHORIZED"),
        (401, "KEY_EXPIRED"),
        (403, "NO_PERMISSION"),
        (403, "OUT_OF_QUOTA"),
        (404, "NOT_FOUND"),
    ],
)
def test_account_errors_name_their_code_and_reached_nothing(http: int, status: str) -> None:
    outcome = classify_submit(answer(http, status=status), NOW, surely_not_sent=False)
    assert outcome.kind is SubmitKind.ACCOUNT_PROBLEM
    assert outcome.code == status
    assert not outcome.reached_upstream


def test_rate_limit_exceeded_reached_nothing() -> None:
    outcome = classify_submit(answer(403, status="RATE_LIMIT_EXCEEDED"), NOW, surely_not_sent=False)
    assert outcome.kind is SubmitKind.RATE_LIMITED
    assert not outcome.reached_upstream


@pytest.mark.parametrize(
    "raw",
    [
        answer(500, status="INTERNAL_ERROR"),
        RawAnswer(status_code=502, body=b"<html>bad gateway</html>"),
        RawAnswer(status_code=200, body=b""),
        RawAnswer(status_code=200, body=b"not json"),
        answer(200, status="OK"),  # neither task_id nor result
        answer(200, status="OK", task_id="bad id!"),  # a task_id that could never be polled
        answer(200, status="SOMETHING_NEW"),
        RawAnswer.failed(TransportError.TIMEOUT),
        RawAnswer.failed(TransportError.CONNECTION_ERROR),
    ],
)
def test_anything_that_may_hide_a_submitted_check_is_an_unknown_outcome(raw: RawAnswer) -> None:
    outcome = classify_submit(raw, NOW, surely_not_sent=False)
    assert outcome.kind is SubmitKind.UNKNOWN
    assert outcome.code == SUBMIT_OUTCOME_UNKNOWN
    assert outcome.reached_upstream


def test_a_connection_never_made_is_upstream_unavailable() -> None:
    outcome = classify_submit(
        RawAnswer.failed(TransportError.CONNECTION_ERROR), NOW, surely_not_sent=True
    )
    assert outcome.kind is SubmitKind.UNAVAILABLE
    assert outcome.code == UPSTREAM_UNAVAILABLE
    assert not outcome.reached_upstream
