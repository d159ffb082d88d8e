"""Submitting a check: the request's rules (its number read by `phone_numbers`), and what upstream's
answer to `POST /check/phone_number/o1` means for the client.

Pure: no I/O. The upstream client turns the call into a `RawAnswer` (plus whether the request
surely never left this process); `classify_submit` says what phonebridge answers and keeps.

Submitting is not idempotent upstream, so the write order around the call is the store's and the
service's business (an intent row committed before the call); here is only what each answer means.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from service.domain.answers import (
    Outcome,
    OutcomeKind,
    PhoneResult,
    RawAnswer,
    classify_answer,
)
from service.domain.check_options import check_max_age_s
from service.domain.intake import TASK_ID_PATTERN, FieldError, Rejection, check_metadata
from service.domain.phone_numbers import (
    NumberRefusal,
    PhoneNumber,
    number_digest,
    parse_phone_number,
)
from service.domain.rechecks import AFTER_S_MIN, RecheckPolicy, check_recheck

CHECK_FIELDS = ("phone_number", "metadata", "recheck", "max_age_s")
IDEMPOTENCY_KEY_MAX_LENGTH = 255
_IDEMPOTENCY_KEY = re.compile(rf"[\x20-\x7e]{{1,{IDEMPOTENCY_KEY_MAX_LENGTH}}}")


@dataclass(frozen=True, slots=True)
class CheckRequest:
    """A valid `POST /v1/checks` body. Its number is sent upstream and must never be stored or
    logged: only `masked` is."""

    number: PhoneNumber
    metadata_json: str
    # The client's `recheck` (service/domain/rechecks.py); None: no re-checks.
    recheck: RecheckPolicy | None = None
    # `max_age_s` (service/domain/check_options.py): answer from this client's final answer for
    # the number younger than this, with no upstream call; 0: never.
    max_age_s: int = 0

    @property
    def masked(self) -> str:
        return self.number.masked

    def fingerprint(self, number_key: bytes) -> bytes:
        """What tells two bodies apart for an Idempotency-Key: a digest of the number's keyed
        digest (`number_digest`), the metadata and the `recheck` when given, so neither the
        number nor anything a guess could be checked against without the key is kept. Only ever
        compared for one client and key."""
        salt = self.metadata_json
        if self.recheck is not None:
            # Only when given, so the digests of checks without it stay what they were.
            salt += "\n" + json.dumps(self.recheck.as_json(), sort_keys=True)
        if self.max_age_s:
            salt += f"\nmax_age_s={self.max_age_s}"
        digest = number_digest(number_key, self.number)
        return hashlib.sha256(digest + b"\n" + salt.encode()).digest()

    def fingerprints(self, number_keys: Sequence[bytes]) -> tuple[bytes, ...]:
        """`fingerprint` under each number key, the current one first: the first is kept, and a
        kept one matches if it is any of them (a retry that spans a rotation of
        PHONEBRIDGE_SECRET_KEY is still the same body)."""
        return tuple(self.fingerprint(key) for key in number_keys)


def validate_check(
    body: object, countries: Collection[str], *, recheck_min_after_s: int = AFTER_S_MIN
) -> CheckRequest | Rejection:
    """Check a `POST /v1/checks` body; every broken rule is reported. `countries` are the
    regions whose numbers are checked (PHONEBRIDGE_CHECK_COUNTRIES); `recheck_min_after_s` the
    deployment's lower bound of `recheck.after_s` (PHONEBRIDGE_RECHECK_MIN_AFTER_S)."""
    if not isinstance(body, dict):
        return Rejection(None, (FieldError(None, "the request body must be a JSON object"),))
    errors = [
        FieldError(str(name)[:64], f"unknown field (allowed: {', '.join(CHECK_FIELDS)})")
        for name in body
        if name not in CHECK_FIELDS
    ]
    number = parse_phone_number(body.get("phone_number"), countries)
    if isinstance(number, NumberRefusal):
        errors.append(FieldError("phone_number", number.message))
    metadata_json = check_metadata(body.get("metadata"), errors)
    recheck = check_recheck(body.get("recheck"), errors, min_after_s=recheck_min_after_s)
    max_age_s = check_max_age_s(body.get("max_age_s"), errors)
    if errors or isinstance(number, NumberRefusal) or metadata_json is None or max_age_s is None:
        return Rejection(None, tuple(errors))
    return CheckRequest(
        number=number, metadata_json=metadata_json, recheck=recheck, max_age_s=max_age_s
    )


def valid_idempotency_key(value: str) -> bool:
    """1-255 printable ASCII characters (the contract's rule)."""
    return _IDEMPOTENCY_KEY.fullmatch(value) is not None


class SubmitKind(StrEnum):
    PENDING = "pending"  # a task_id to poll
    FINISHED = "finished"  # the result at once
    REJECTED = "rejected"  # INVALID_ARGUMENT: nothing kept
    ACCOUNT_PROBLEM = "account_problem"  # 503; the pause opens as for polls
    RATE_LIMITED = "rate_limited"  # upstream refused the call: nothing was submitted
    UNKNOWN = "unknown"  # the request may have reached upstream: never resubmit on our own
    UNAVAILABLE = "unavailable"  # the request surely never reached upstream


# The problem codes the client sees in a 502.
SUBMIT_OUTCOME_UNKNOWN = "SUBMIT_OUTCOME_UNKNOWN"
# The task_id phonebridge makes for a check upstream finished at once (upstream gives none then):
# this prefix and 32 hex digits.
INSTANT_TASK_PREFIX = "instant-"
UPSTREAM_UNAVAILABLE = "UPSTREAM_UNAVAILABLE"


@dataclass(frozen=True)
class SubmitOutcome:
    kind: SubmitKind
    code: str
    message: str
    request_id: str | None = None
    task_id: str | None = None
    result: PhoneResult | None = None
    retry_after_s: float | None = None

    @property
    def reached_upstream(self) -> bool:
        """Whether upstream may have taken the check: the Idempotency-Key stays spent. A
        rejected number (INVALID_ARGUMENT) was refused, so nothing was taken."""
        return self.kind not in (
            SubmitKind.UNAVAILABLE,
            SubmitKind.ACCOUNT_PROBLEM,
            SubmitKind.RATE_LIMITED,
            SubmitKind.REJECTED,
        )


def classify_submit(raw: RawAnswer, now: datetime, *, surely_not_sent: bool) -> SubmitOutcome:
    """What upstream's answer to a submit means. `surely_not_sent`: the transport failed before
    any byte of the request could have left (the connection was never made)."""
    if raw.status_code is None:
        if surely_not_sent:
            return SubmitOutcome(
                SubmitKind.UNAVAILABLE, UPSTREAM_UNAVAILABLE, "could not connect to upstream"
            )
        return SubmitOutcome(
            SubmitKind.UNKNOWN,
            SUBMIT_OUTCOME_UNKNOWN,
            "upstream did not answer; the check may or may not have been submitted",
        )
    answer = classify_answer(raw, now)
    request_id = answer.request_id
    if answer.kind is OutcomeKind.COMPLETED and answer.result is not None:
        return SubmitOutcome(
            SubmitKind.FINISHED,
            "OK",
            answer.message,
            request_id=request_id,
            result=answer.result,
        )
    if answer.kind is OutcomeKind.REJECTED:
        return SubmitOutcome(
            SubmitKind.REJECTED, answer.code, answer.message, request_id=request_id
        )
    if answer.kind is OutcomeKind.ACCOUNT_PROBLEM:
        return SubmitOutcome(
            SubmitKind.ACCOUNT_PROBLEM,
            answer.code,
            answer.message,
            request_id=request_id,
        )
    if answer.kind is OutcomeKind.RATE_LIMITED:
        return SubmitOutcome(
            SubmitKind.RATE_LIMITED,
            answer.code,
            answer.message,
            request_id=request_id,
            retry_after_s=answer.retry_after_s,
        )
    task_id = _pending_task_id(raw, answer)
    if task_id is not None:
        return SubmitOutcome(
            SubmitKind.PENDING, "PENDING", "check submitted", request_id=request_id, task_id=task_id
        )
    return SubmitOutcome(
        SubmitKind.UNKNOWN,
        SUBMIT_OUTCOME_UNKNOWN,
        f"upstream's answer could not be used ({answer.code}); the check may or may not have "
        "been submitted",
        request_id=request_id,
    )


def _pending_task_id(raw: RawAnswer, answer: Outcome) -> str | None:
    """The task_id of a submit that upstream took: status OK (or PENDING) with a 2xx/400 and a
    task_id our own rules accept (anything else could not be polled or shown)."""
    if answer.kind not in (OutcomeKind.TRANSIENT, OutcomeKind.PENDING):
        return None
    if answer.kind is OutcomeKind.TRANSIENT and answer.code != "MALFORMED_RESULT":
        return None
    try:
        body = json.loads(raw.body)
    except (ValueError, RecursionError):
        return None
    task_id = body.get("task_id") if isinstance(body, dict) else None
    if isinstance(task_id, str) and TASK_ID_PATTERN.fullmatch(task_id):
        return task_id
    return None
