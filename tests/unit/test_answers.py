"""Classifying upstream answers: every row of the contract's table, and everything unexpected."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.answers import (
    ACCOUNT_PROBLEM_CODES,
    KNOWN_PHONE_STATUSES,
    MESSAGE_MAX_CHARS,
    REQUEST_ID_MAX_CHARS,
    RETRY_AFTER_MAX_S,
    OutcomeKind,
    PhoneResult,
    RawAnswer,
    TransportError,
    classify_answer,
    parse_retry_after,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
RID = "TID591cb9fb0e284cf296912a4d0ffea889"


def answer(http: int, body: object, retry_after: str | None = None) -> RawAnswer:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return RawAnswer(status_code=http, body=raw, retry_after=retry_after)


OK_RESULT = {"phone_number": "0062********", "phone_status": "ring"}

# (name, raw answer, kind, code)
CASES: list[tuple[str, RawAnswer, OutcomeKind, str]] = [
    (
        "ok_with_result",
        answer(200, {"status": "OK", "result": OK_RESULT, "request_id": RID}),
        OutcomeKind.COMPLETED,
        "OK",
    ),
    (
        "pending_as_400",
        answer(400, {"status": "PENDING", "reason": "check in progress", "request_id": RID}),
        OutcomeKind.PENDING,
        "PENDING",
    ),
    ("pending_as_200", answer(200, {"status": "PENDING"}), OutcomeKind.PENDING, "PENDING"),
    ("pending_as_500", answer(500, {"status": "PENDING"}), OutcomeKind.PENDING, "PENDING"),
    ("pending_as_404", answer(404, {"status": "PENDING"}), OutcomeKind.PENDING, "PENDING"),
    (
        "invalid_argument",
        answer(400, {"status": "INVALID_ARGUMENT", "reason": "argument 'task_id': not found"}),
        OutcomeKind.REJECTED,
        "INVALID_ARGUMENT",
    ),
    (
        "invalid_argument_as_5xx_is_not_trusted",
        answer(503, {"status": "INVALID_ARGUMENT", "reason": "x"}),
        OutcomeKind.TRANSIENT,
        "UNEXPECTED_HTTP_STATUS",
    ),
    (
        "rate_limited",
        answer(403, {"status": "RATE_LIMIT_EXCEEDED"}),
        OutcomeKind.RATE_LIMITED,
        "RATE_LIMIT_EXCEEDED",
    ),
    (
        "rate_limited_as_429",
        answer(429, {"status": "RATE_LIMIT_EXCEEDED"}),
        OutcomeKind.RATE_LIMITED,
        "RATE_LIMIT_EXCEEDED",
    ),
    (
        "proxy_429_without_json",
        answer(429, b"<html>slow down</html>"),
        OutcomeKind.RATE_LIMITED,
        "RATE_LIMIT_EXCEEDED",
    ),
    (
        "unauthorized",
        answer(401, {"status": "UNAUTHORIZED"}),
        OutcomeKind.ACCOUNT_PROBLEM,
        "UNAUTHORIZED",
    ),
    (
        "key_expired",
        answer(401, {"status": "KEY_EXPIRED"}),
        OutcomeKind.ACCOUNT_PROBLEM,
        "KEY_EXPIRED",
    ),
    (
        "no_permission",
        answer(403, {"status": "NO_PERMISSION"}),
        OutcomeKind.ACCOUNT_PROBLEM,
        "NO_PERMISSION",
    ),
    (
        "out_of_quota",
        answer(403, {"status": "OUT_OF_QUOTA"}),
        OutcomeKind.ACCOUNT_PROBLEM,
        "OUT_OF_QUOTA",
    ),
    ("not_found", answer(404, {"status": "NOT_FOUND"}), OutcomeKind.ACCOUNT_PROBLEM, "NOT_FOUND"),
    (
        "account_code_under_odd_http_status",
        answer(200, {"status": "KEY_EXPIRED"}),
        OutcomeKind.ACCOUNT_PROBLEM,
        "KEY_EXPIRED",
    ),
    (
        "account_code_under_500",
        answer(500, {"status": "OUT_OF_QUOTA"}),
        OutcomeKind.ACCOUNT_PROBLEM,
        "OUT_OF_QUOTA",
    ),
    (
        "internal_error",
        answer(500, {"status": "INTERNAL_ERROR"}),
        OutcomeKind.TRANSIENT,
        "INTERNAL_ERROR",
    ),
    (
        "html_page",
        answer(502, b"<html><body>Bad Gateway</body></html>"),
        OutcomeKind.TRANSIENT,
        "INVALID_JSON",
    ),
    ("garbage", answer(200, b"\x00\xffnot json"), OutcomeKind.TRANSIENT, "INVALID_JSON"),
    (
        "truncated_json",
        answer(200, b'{"status": "OK", "res'),
        OutcomeKind.TRANSIENT,
        "INVALID_JSON",
    ),
    ("empty_body", answer(200, b""), OutcomeKind.TRANSIENT, "EMPTY_BODY"),
    ("blank_body", answer(500, b"  \r\n"), OutcomeKind.TRANSIENT, "EMPTY_BODY"),
    ("json_list", answer(200, [1, 2]), OutcomeKind.TRANSIENT, "UNEXPECTED_JSON"),
    ("json_string", answer(200, "OK"), OutcomeKind.TRANSIENT, "UNEXPECTED_JSON"),
    ("json_null", answer(200, None), OutcomeKind.TRANSIENT, "UNEXPECTED_JSON"),
    ("no_status", answer(200, {"request_id": RID}), OutcomeKind.TRANSIENT, "UNKNOWN_STATUS"),
    ("status_not_string", answer(200, {"status": 7}), OutcomeKind.TRANSIENT, "UNKNOWN_STATUS"),
    (
        "unknown_status",
        answer(200, {"status": "MAINTENANCE"}),
        OutcomeKind.TRANSIENT,
        "UNKNOWN_STATUS",
    ),
    ("ok_without_result", answer(200, {"status": "OK"}), OutcomeKind.TRANSIENT, "MALFORMED_RESULT"),
    (
        "ok_result_not_object",
        answer(200, {"status": "OK", "result": "ring"}),
        OutcomeKind.TRANSIENT,
        "MALFORMED_RESULT",
    ),
    (
        "ok_result_missing_status",
        answer(200, {"status": "OK", "result": {"phone_number": "0062****"}}),
        OutcomeKind.TRANSIENT,
        "MALFORMED_RESULT",
    ),
    (
        "ok_result_status_not_string",
        answer(200, {"status": "OK", "result": {"phone_number": "1", "phone_status": 3}}),
        OutcomeKind.TRANSIENT,
        "MALFORMED_RESULT",
    ),
    (
        "ok_result_empty_status",
        answer(200, {"status": "OK", "result": {"phone_number": "1", "phone_status": ""}}),
        OutcomeKind.TRANSIENT,
        "MALFORMED_RESULT",
    ),
    (
        "ok_as_500",
        answer(500, {"status": "OK", "result": OK_RESULT}),
        OutcomeKind.TRANSIENT,
        "UNEXPECTED_HTTP_STATUS",
    ),
    ("timeout", RawAnswer.failed(TransportError.TIMEOUT), OutcomeKind.TRANSIENT, "TIMEOUT"),
    (
        "connection_error",
        RawAnswer.failed(TransportError.CONNECTION_ERROR),
        OutcomeKind.TRANSIENT,
        "CONNECTION_ERROR",
    ),
]


@pytest.mark.parametrize(("raw", "kind", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_answer_is_classified_per_the_contract(
    raw: RawAnswer, kind: OutcomeKind, code: str
) -> None:
    outcome = classify_answer(raw, NOW)
    assert (outcome.kind, outcome.code) == (kind, code)
    assert 0 < len(outcome.message) <= MESSAGE_MAX_CHARS


def test_every_account_code_is_an_account_problem() -> None:
    assert {"UNAUTHORIZED", "KEY_EXPIRED", "NO_PERMISSION", "OUT_OF_QUOTA", "NOT_FOUND"} == (
        ACCOUNT_PROBLEM_CODES
    )


def test_completed_answer_carries_result_and_request_id() -> None:
    outcome = classify_answer(
        answer(200, {"status": "OK", "result": OK_RESULT, "request_id": RID}), NOW
    )
    assert outcome.result == PhoneResult("0062********", "ring")
    assert outcome.request_id == RID
    assert not outcome.unknown_phone_status


@pytest.mark.parametrize("phone_status", sorted(KNOWN_PHONE_STATUSES))
def test_known_phone_statuses_are_not_flagged(phone_status: str) -> None:
    result = {"phone_number": "0062****", "phone_status": phone_status}
    outcome = classify_answer(answer(200, {"status": "OK", "result": result}), NOW)
    assert outcome.kind is OutcomeKind.COMPLETED
    assert not outcome.unknown_phone_status


def test_unknown_phone_status_is_kept_as_given_and_flagged() -> None:
    result = {"phone_number": "0062****", "phone_status": "voicemail_full"}
    outcome = classify_answer(answer(200, {"status": "OK", "result": result}), NOW)
    assert outcome.kind is OutcomeKind.COMPLETED
    assert outcome.result == PhoneResult("0062****", "voicemail_full")
    assert outcome.unknown_phone_status


def test_rejection_keeps_upstream_reason() -> None:
    reason = "argument 'task_id': not found"
    outcome = classify_answer(
        answer(400, {"status": "INVALID_ARGUMENT", "reason": reason, "request_id": RID}), NOW
    )
    assert outcome.message == reason
    assert outcome.request_id == RID


def test_request_id_is_kept_on_errors() -> None:
    outcome = classify_answer(answer(500, {"status": "INTERNAL_ERROR", "request_id": RID}), NOW)
    assert outcome.request_id == RID


def test_overlong_reason_and_request_id_are_capped_and_cleaned() -> None:
    body = {"status": "INVALID_ARGUMENT", "reason": "x\n" * 1000, "request_id": "T" * 500}
    outcome = classify_answer(answer(400, body), NOW)
    assert len(outcome.message) <= MESSAGE_MAX_CHARS
    assert "\n" not in outcome.message
    assert outcome.request_id is not None
    assert len(outcome.request_id) == REQUEST_ID_MAX_CHARS


def test_non_string_request_id_is_dropped() -> None:
    outcome = classify_answer(answer(400, {"status": "PENDING", "request_id": 12}), NOW)
    assert outcome.request_id is None


def test_unknown_status_message_does_not_echo_an_endless_value() -> None:
    outcome = classify_answer(answer(200, {"status": "Z" * 10_000}), NOW)
    assert outcome.code == "UNKNOWN_STATUS"
    assert len(outcome.message) <= MESSAGE_MAX_CHARS


def test_transport_errors_are_not_answers() -> None:
    assert not classify_answer(RawAnswer.failed(TransportError.TIMEOUT), NOW).answered
    assert classify_answer(answer(500, b""), NOW).answered


def test_rate_limited_answer_carries_retry_after() -> None:
    outcome = classify_answer(answer(403, {"status": "RATE_LIMIT_EXCEEDED"}, "7"), NOW)
    assert outcome.retry_after_s == 7.0


RETRY_AFTER_CASES = [
    (None, None),
    ("", None),
    ("3", 3.0),
    (" 2.5 ", 2.5),
    ("0", 0.0),
    ("-4", 0.0),
    ("99999999", RETRY_AFTER_MAX_S),
    ("soon", None),
    ("nan", None),
    (format_datetime(NOW + timedelta(seconds=30), usegmt=True), 30.0),
    (format_datetime(NOW - timedelta(seconds=30), usegmt=True), 0.0),
]


@pytest.mark.parametrize(("header", "seconds"), RETRY_AFTER_CASES)
def test_retry_after_header_is_read(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, NOW) == seconds


@given(st.binary(max_size=512), st.integers(min_value=100, max_value=599))
def test_any_bytes_classify_without_raising(body: bytes, http: int) -> None:
    outcome = classify_answer(RawAnswer(status_code=http, body=body), NOW)
    assert len(outcome.message) <= MESSAGE_MAX_CHARS
    if outcome.kind is OutcomeKind.COMPLETED:
        assert outcome.result is not None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@given(
    st.dictionaries(
        st.sampled_from(["status", "result", "reason", "request_id", "other"]), json_values
    ),
    st.integers(min_value=100, max_value=599),
    st.one_of(st.none(), st.text(max_size=30)),
)
def test_any_json_object_classifies_into_a_known_kind(
    body: dict[str, object], http: int, retry_after: str | None
) -> None:
    outcome = classify_answer(answer(http, body, retry_after), NOW)
    assert outcome.kind in set(OutcomeKind)
    assert outcome.code
    if outcome.retry_after_s is not None:
        assert 0 <= outcome.retry_after_s <= RETRY_AFTER_MAX_S
    if outcome.request_id is not None:
        assert len(outcome.request_id) <= REQUEST_ID_MAX_CHARS
