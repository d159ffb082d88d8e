"""Upstream answer -> classified outcome.

AccuAuth answers with JSON carrying `status`, `request_id` and, on failure, `reason`; a finished
check carries `result`. Its HTTP status codes are not to be trusted on their own (PENDING comes as
400, a proxy may answer with an HTML page), so the JSON `status` decides wherever there is one, and
everything unexpected is a transient fault: retried with backoff, never a crash, never a lost task.

Pure: no I/O. The upstream client turns whatever the network did into a `RawAnswer`;
`classify_answer` turns that into an `Outcome` with a stable error code and a short message that is
safe to store and log (it never echoes headers, and upstream text in it is capped and cleaned).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any, TypeGuard


class PhoneStatus(StrEnum):
    """The eight `phone_status` values upstream documents for a finished check. Another value is
    passed on as it comes (upstream may add one), so `PhoneResult.phone_status` stays a `str`."""

    RING = "ring"
    CONNECTED = "connected"
    EMPTY = "empty"
    BUSY = "busy"
    TURNED_OFF = "turned_off"
    OUTSIDE_SERVICE_AREA = "outside_service_area"
    LINE_ABNORMAL = "line_abnormal"
    TEMP_UNAVAILABLE = "temp_unavailable"


KNOWN_PHONE_STATUSES = frozenset(status.value for status in PhoneStatus)
ACCOUNT_PROBLEM_CODES = frozenset(
    {"UNAUTHORIZED", "KEY_EXPIRED", "NO_PERMISSION", "OUT_OF_QUOTA", "NOT_FOUND"}
)

MESSAGE_MAX_CHARS = 200
REQUEST_ID_MAX_CHARS = 128  # tasks.upstream_request_id is VARCHAR(128)
RESULT_FIELD_MAX_CHARS = 64
# A Retry-After further away than this is treated as this: a broken header must not stall polling
# for days.
RETRY_AFTER_MAX_S = 3600.0


# Upstream's "not ready yet", which it answers with HTTP 400: the status, and the code of the
# outcome (and of a poll in a task's story).
PENDING_CODE = "PENDING"


class OutcomeKind(StrEnum):
    COMPLETED = "completed"
    PENDING = "pending"
    REJECTED = "rejected"
    RATE_LIMITED = "rate_limited"
    ACCOUNT_PROBLEM = "account_problem"
    TRANSIENT = "transient"


class TransportError(StrEnum):
    """What went wrong before an HTTP answer arrived."""

    TIMEOUT = "TIMEOUT"
    CONNECTION_ERROR = "CONNECTION_ERROR"


@dataclass(frozen=True)
class RawAnswer:
    """What one upstream call produced: an HTTP answer, or a transport error and no answer."""

    status_code: int | None
    body: bytes = b""
    retry_after: str | None = None
    transport_error: TransportError | None = None

    @classmethod
    def failed(cls, error: TransportError) -> RawAnswer:
        return cls(status_code=None, transport_error=error)


@dataclass(frozen=True)
class PhoneResult:
    phone_number: str
    phone_status: str

    def as_json(self) -> dict[str, str]:
        return {"phone_number": self.phone_number, "phone_status": self.phone_status}


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    # Stable, machine-readable: the upstream status (PENDING, INVALID_ARGUMENT, KEY_EXPIRED, ...)
    # or one of ours for faults (TIMEOUT, INVALID_JSON, MALFORMED_RESULT, ...).
    code: str
    message: str
    request_id: str | None = None
    result: PhoneResult | None = None
    retry_after_s: float | None = None
    # An unknown phone_status is kept as given; the edge logs it so nobody is surprised later.
    unknown_phone_status: bool = False
    # True when upstream itself answered (an HTTP response arrived), false for transport errors.
    answered: bool = True


def classify_answer(raw: RawAnswer, now: datetime) -> Outcome:
    """Classify one upstream answer.

    `now` is only used to read a Retry-After given as an HTTP date.
    """
    if raw.transport_error is not None or raw.status_code is None:
        error = raw.transport_error or TransportError.CONNECTION_ERROR
        message = (
            "upstream did not answer in time"
            if error is TransportError.TIMEOUT
            else "could not reach upstream"
        )
        return Outcome(OutcomeKind.TRANSIENT, error.value, message, answered=False)

    http = raw.status_code
    retry_after_s = parse_retry_after(raw.retry_after, now)
    body = _parse_json(raw.body)

    if not isinstance(body, dict):
        if http == 429:
            # A proxy's rate limiting says so with the status code and maybe a header only.
            return Outcome(
                OutcomeKind.RATE_LIMITED,
                "RATE_LIMIT_EXCEEDED",
                "HTTP 429 without a JSON answer",
                retry_after_s=retry_after_s,
            )
        return Outcome(OutcomeKind.TRANSIENT, *_describe_unusable_body(raw.body, body, http))

    request_id = _request_id(body.get("request_id"))
    status = body.get("status")
    reason = _safe_text(body.get("reason"))

    def outcome(kind: OutcomeKind, code: str, message: str) -> Outcome:
        return Outcome(kind, code, message, request_id=request_id, retry_after_s=retry_after_s)

    if not isinstance(status, str) or not status:
        return outcome(OutcomeKind.TRANSIENT, "UNKNOWN_STATUS", f"HTTP {http}: no status field")
    if status == PENDING_CODE:
        return outcome(OutcomeKind.PENDING, PENDING_CODE, reason or "check in progress")
    if status == "OK":
        return _classify_ok(body, http, request_id)
    if status == "INVALID_ARGUMENT":
        if http >= 500:
            # Contradictory (a server fault carrying a client error): not proof enough to fail
            # the task for good; ask again.
            return outcome(
                OutcomeKind.TRANSIENT, "UNEXPECTED_HTTP_STATUS", f"INVALID_ARGUMENT as HTTP {http}"
            )
        return outcome(OutcomeKind.REJECTED, "INVALID_ARGUMENT", reason or "invalid argument")
    if status == "RATE_LIMIT_EXCEEDED":
        return outcome(OutcomeKind.RATE_LIMITED, status, reason or "too many calls")
    if status in ACCOUNT_PROBLEM_CODES:
        return outcome(OutcomeKind.ACCOUNT_PROBLEM, status, reason or _ACCOUNT_MESSAGES[status])
    if status == "INTERNAL_ERROR":
        return outcome(OutcomeKind.TRANSIENT, status, reason or "upstream fault")
    return outcome(
        OutcomeKind.TRANSIENT,
        "UNKNOWN_STATUS",
        f"HTTP {http}: unknown status {_safe_text(status, 40)!r}",
    )


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), or None.

    Unreadable values are ignored; the result is within [0, RETRY_AFTER_MAX_S].
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            return None
        seconds = (when - now).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX_S)


_ACCOUNT_MESSAGES = {
    "UNAUTHORIZED": "credentials missing, wrong, or access denied",
    "KEY_EXPIRED": "the API id has expired",
    "NO_PERMISSION": "the account may not use this API",
    "OUT_OF_QUOTA": "the account's call quota is used up",
    "NOT_FOUND": "the API path does not exist (check the upstream base URL)",
}


def _classify_ok(body: dict[str, Any], http: int, request_id: str | None) -> Outcome:
    if not 200 <= http < 300:
        return Outcome(
            OutcomeKind.TRANSIENT,
            "UNEXPECTED_HTTP_STATUS",
            f"status OK as HTTP {http}",
            request_id=request_id,
        )
    result = body.get("result")
    if not isinstance(result, dict):
        return Outcome(
            OutcomeKind.TRANSIENT,
            "MALFORMED_RESULT",
            "status OK without a result object",
            request_id=request_id,
        )
    phone_number = result.get("phone_number")
    phone_status = result.get("phone_status")
    if not _is_result_field(phone_number) or not _is_result_field(phone_status):
        return Outcome(
            OutcomeKind.TRANSIENT,
            "MALFORMED_RESULT",
            "status OK with a result missing phone_number or phone_status",
            request_id=request_id,
        )
    return Outcome(
        OutcomeKind.COMPLETED,
        "OK",
        f"phone_status {phone_status}",
        request_id=request_id,
        result=PhoneResult(phone_number, phone_status),
        unknown_phone_status=phone_status not in KNOWN_PHONE_STATUSES,
    )


def _is_result_field(value: object) -> TypeGuard[str]:
    return (
        isinstance(value, str)
        and 0 < len(value) <= RESULT_FIELD_MAX_CHARS
        and value.isprintable()
        and value.strip() == value
    )


_NOT_JSON = object()


def _parse_json(body: bytes) -> object:
    if not body.strip():
        return _NOT_JSON
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return _NOT_JSON


def _describe_unusable_body(raw: bytes, parsed: object, http: int) -> tuple[str, str]:
    if not raw.strip():
        return "EMPTY_BODY", f"HTTP {http} with an empty body"
    if parsed is _NOT_JSON:
        if raw.lstrip()[:1] == b"<":
            return "INVALID_JSON", f"HTTP {http} with an HTML or XML body"
        return "INVALID_JSON", f"HTTP {http} with a body that is not JSON"
    return "UNEXPECTED_JSON", f"HTTP {http} with JSON that is not an object"


def _request_id(value: object) -> str | None:
    if not isinstance(value, str) or not value or not value.isprintable():
        return None
    return value[:REQUEST_ID_MAX_CHARS]


def _safe_text(value: object, limit: int = MESSAGE_MAX_CHARS) -> str:
    """Upstream text made safe to store: a string, printable, single-line, capped."""
    if not isinstance(value, str):
        return ""
    cleaned = "".join(ch if ch.isprintable() else " " for ch in value).strip()
    if len(cleaned) > limit:
        return cleaned[: limit - 1] + "…"
    return cleaned
