"""Problem documents (RFC 9457 `application/problem+json`): the one builder every error answer of
phonebridge goes through, and the stable `code` each kind of problem carries.

A `ProblemKind` pairs the `code` a program switches on (listed in the README) with the `type`
URI's last word; a kind without one is `about:blank`, the status saying it all. The REST API
(`service.api.errors`) and the check submitter (`service.checks.submit`, whose answers are kept
as text for replays) both build their bodies with `problem_document`.

How to extend: a new kind of failure is a constant here (its code in UPPER_SNAKE_CASE, never
renamed once published) and a row in the README's table of codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

PROBLEM_TYPE_PREFIX = "urn:phonebridge:problem:"


@dataclass(frozen=True, slots=True)
class ProblemKind:
    code: str
    # The end of `type` (`urn:phonebridge:problem:<slug>`); None for `about:blank`.
    slug: str | None = None

    @property
    def type(self) -> str:
        return PROBLEM_TYPE_PREFIX + self.slug if self.slug else "about:blank"


VALIDATION_FAILED = ProblemKind("VALIDATION_FAILED", "invalid-input")
UNAUTHENTICATED = ProblemKind("UNAUTHENTICATED", "unauthenticated")
NOT_FOUND = ProblemKind("NOT_FOUND")
METHOD_NOT_ALLOWED = ProblemKind("METHOD_NOT_ALLOWED")
CONFLICT = ProblemKind("CONFLICT")
BODY_TOO_LARGE = ProblemKind("BODY_TOO_LARGE")
UNSUPPORTED_MEDIA_TYPE = ProblemKind("UNSUPPORTED_MEDIA_TYPE", "unsupported-media-type")
RATE_LIMITED = ProblemKind("RATE_LIMITED", "rate-limited")
TOO_MANY_PENDING = ProblemKind("TOO_MANY_PENDING", "too-many-pending")
CHECK_BUDGET_EXHAUSTED = ProblemKind("CHECK_BUDGET_EXHAUSTED", "check-budget-exhausted")
TOO_MANY_FAILED_SIGN_INS = ProblemKind("TOO_MANY_FAILED_SIGN_INS", "too-many-failed-sign-ins")
TASK_ALREADY_FINAL = ProblemKind("TASK_ALREADY_FINAL", "task-already-final")
SUBSCRIPTION_DISABLED = ProblemKind("SUBSCRIPTION_DISABLED", "subscription-disabled")
NO_PUBLIC_URL = ProblemKind("NO_PUBLIC_URL", "no-public-url")
DATABASE_UNAVAILABLE = ProblemKind("DATABASE_UNAVAILABLE", "database-unavailable")
INTERNAL_ERROR = ProblemKind("INTERNAL_ERROR")

# The kind of a problem that only its status describes (Starlette's own 404 and 405, a 500).
_KIND_OF_STATUS = {
    401: UNAUTHENTICATED,
    404: NOT_FOUND,
    405: METHOD_NOT_ALLOWED,
    409: CONFLICT,
    413: BODY_TOO_LARGE,
    415: UNSUPPORTED_MEDIA_TYPE,
    422: VALIDATION_FAILED,
    429: RATE_LIMITED,
    500: INTERNAL_ERROR,
}


def kind_of_status(status: int) -> ProblemKind:
    """The kind of a problem known only by its status: a listed one, else the status's name
    (`BAD_REQUEST`), always with the type `about:blank`."""
    known = _KIND_OF_STATUS.get(status)
    if known is not None:
        return ProblemKind(known.code)
    try:
        return ProblemKind(HTTPStatus(status).name)
    except ValueError:
        return ProblemKind("ERROR")


def upstream_kind(code: str) -> ProblemKind:
    """A problem named by a code of the submit path (upstream's `KEY_EXPIRED`, phonebridge's
    `SUBMIT_OUTCOME_UNKNOWN`): the code as given, its type slug the code in kebab case."""
    return ProblemKind(code, code.lower().replace("_", "-"))


def status_title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_document(
    status: int,
    detail: str,
    kind: ProblemKind,
    *,
    title: str | None = None,
    errors: Sequence[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The problem document of an answer: `type`, `title` (the status's phrase unless given),
    `status`, `detail`, `code`, and for invalid input each broken rule in `errors`."""
    body: dict[str, Any] = {
        "type": kind.type,
        "title": title if title is not None else status_title(status),
        "status": status,
        "detail": detail,
        "code": kind.code,
    }
    if errors is not None:
        body["errors"] = list(errors)
    return body
