"""The pure rules of a submitted check: the body, the phone number and its mask, the
Idempotency-Key, and what each upstream answer to a submit means."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.answers import RawAnswer, TransportError
from service.domain.checks import (
    PHONE_RULE,
    SUBMIT_OUTCOME_UNKNOWN,
    UPSTREAM_UNAVAILABLE,
    CheckRequest,
    SubmitKind,
    classify_submit,
    country_code_of,
    mask_phone_number,
    valid_idempotency_key,
    validate_check,
)
from service.domain.intake import Rejection

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def answer(http: int, **body: object) -> RawAnswer:
    return RawAnswer(status_code=http, body=json.dumps(body).encode())


# --- the body --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_number", "digits"),
    [
        ("5215512341234", "5215512341234"),
        ("+5215512341234", "5215512341234"),
        ("14155550123", "14155550123"),
        ("12345678", "12345678"),  # 8 digits, the least
        ("123456789012345", "123456789012345"),  # 15 digits, the most
    ],
)
def test_a_valid_number_is_kept_as_digits(given_number: str, digits: str) -> None:
    checked = validate_check({"phone_number": given_number})
    assert isinstance(checked, CheckRequest)
    assert checked.phone_number == digits
    assert checked.metadata_json == "{}"


@pytest.mark.parametrize(
    "number",
    [
        "1234567",
        "1234567890123456",
        "05512345678",
        "+05512345678",
        "++5215512341234",
        "52 155 1234 1234",
        "52-1551234",
        "\uff15\uff12\uff11\uff15\uff15\uff11\uff12\uff13\uff14",  # full-width digits
        "",
        "+",
    ],
)
def test_an_invalid_number_is_rejected_without_echoing_it(number: str) -> None:
    checked = validate_check({"phone_number": number})
    assert isinstance(checked, Rejection)
    assert checked.errors[0].field == "phone_number"
    # The rule, never the number: a rejection's text may reach a log.
    assert checked.errors[0].message == PHONE_RULE


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "phone_number"),
        ({"phone_number": 5215512341234}, "phone_number"),
        ({"phone_number": "5215512341234", "callback": "x"}, "callback"),
        ({"phone_number": "5215512341234", "metadata": []}, "metadata"),
    ],
)
def test_every_broken_rule_names_its_field(body: dict[str, object], field: str) -> None:
    checked = validate_check(body)
    assert isinstance(checked, Rejection)
    assert field in {error.field for error in checked.errors}


def test_a_body_that_is_not_an_object_is_rejected() -> None:
    assert isinstance(validate_check(["5215512341234"]), Rejection)


def test_the_fingerprint_tells_bodies_apart_and_holds_no_number() -> None:
    one = validate_check({"phone_number": "5215512341234"})
    same = validate_check({"phone_number": "+5215512341234"})
    other_number = validate_check({"phone_number": "5215512341235"})
    other_metadata = validate_check({"phone_number": "5215512341234", "metadata": {"a": 1}})
    assert isinstance(one, CheckRequest)
    assert isinstance(same, CheckRequest)
    assert isinstance(other_number, CheckRequest)
    assert isinstance(other_metadata, CheckRequest)
    assert one.fingerprint == same.fingerprint
    assert len({one.fingerprint, other_number.fingerprint, other_metadata.fingerprint}) == 3
    assert b"5215512341234" not in one.fingerprint


# --- the mask --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("digits", "code", "masked"),
    [
        ("5215512341234", "52", "52*******1234"),
        ("14155550123", "1", "1******0123"),
        ("79161234567", "7", "7******4567"),
        ("4915112345678", "49", "49*******5678"),
        ("35312345678", "353", "353****5678"),
        ("12345678", "1", "1***5678"),
    ],
)
def test_the_mask_keeps_the_country_code_and_the_last_four_digits(
    digits: str, code: str, masked: str
) -> None:
    assert country_code_of(digits) == code
    assert mask_phone_number(digits) == masked


@given(st.from_regex(r"[1-9][0-9]{7,14}", fullmatch=True))
def test_a_mask_never_shows_more_than_the_code_and_the_last_four(digits: str) -> None:
    masked = mask_phone_number(digits)
    code = country_code_of(digits)
    assert len(masked) == len(digits)
    assert masked.startswith(code)
    assert masked.endswith(digits[-4:])
    shown = sum(1 for ch in masked if ch != "*")
    assert shown <= len(code) + 4


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
        result={"phone_number": "5215****", "phone_status": "busy"},
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
