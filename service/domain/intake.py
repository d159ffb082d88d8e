"""Validation of task registrations: the rules of `POST /v1/tasks` and of each batch entry.

Pure: the caller passes the parsed JSON entry, the current time and the task validity (TTL), and
gets back either a `Registration` ready to store or a `Rejection` saying why, field by field.
Everything a client can put in an entry is checked here, so no value that Postgres would refuse
(NUL characters, non-finite numbers) ever reaches it.

Choices the contract leaves open, documented for clients:
- `submitted_at` may lie up to `CLOCK_SKEW` (5 s) in the future: the client's clock and ours are
  never exactly in step, and a check submitted "just now" must not be refused for it.
- Unknown fields are refused (422), as Stripe does: a misspelt `metdata` would otherwise be
  dropped without a word.
- `submitted_at: null` and `metadata: null` mean the same as leaving the field out.
- `metadata` may nest at most `METADATA_MAX_DEPTH` levels deep.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from service.domain.jsontext import compact_json

TASK_ID_MAX_LENGTH = 128
TASK_ID_PATTERN = re.compile(rf"[A-Za-z0-9._:-]{{1,{TASK_ID_MAX_LENGTH}}}")
TASK_ID_RULE = f"must be 1-{TASK_ID_MAX_LENGTH} characters of A-Z a-z 0-9 . _ : -"
# How many entries one `POST /v1/tasks/batch` may hold.
BATCH_MAX_TASKS = 1000
CLOCK_SKEW = timedelta(seconds=5)
METADATA_MAX_BYTES = 4096
METADATA_MAX_DEPTH = 32
REGISTRATION_FIELDS = ("task_id", "submitted_at", "metadata")

# RFC 3339 date-time: the offset is mandatory, so a naive time never matches.
_RFC3339 = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<fraction>\d+))?"
    r"(?P<offset>[Zz]|[+-]\d{2}:\d{2})"
)
_FIELD_NAME_SHOWN = 64
_UNKNOWN_FIELD = "unknown field (allowed: task_id, submitted_at, metadata)"


@dataclass(frozen=True, slots=True)
class FieldError:
    """One broken rule: the field it concerns (None for the entry as a whole) and why."""

    field: str | None
    message: str

    def describe(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


@dataclass(frozen=True, slots=True)
class Registration:
    """A valid registration, in the form the store keeps it."""

    task_id: str
    submitted_at: datetime
    expires_at: datetime
    # The compact JSON text of the metadata: exactly what was measured against the size limit.
    metadata_json: str


@dataclass(frozen=True, slots=True)
class Rejection:
    """An entry that cannot be registered. `task_id` echoes the entry's task_id when that was a
    string (even an invalid one), so a batch caller can tell its entries apart."""

    task_id: str | None
    errors: tuple[FieldError, ...]

    @property
    def detail(self) -> str:
        return "; ".join(error.describe() for error in self.errors)


def validate_registration(
    entry: object, *, now: datetime, ttl: timedelta
) -> Registration | Rejection:
    """Check one registration entry (a parsed JSON value) against every rule of the contract.

    `now` must be timezone-aware. Every broken rule is reported, not just the first. JSON objects
    are expected as `dict`, as every JSON parser gives them.
    """
    if not isinstance(entry, dict):
        return Rejection(None, (FieldError(None, "each task must be a JSON object"),))
    raw_task_id = entry.get("task_id")
    echoed_task_id = raw_task_id if isinstance(raw_task_id, str) else None
    errors: list[FieldError] = [
        FieldError(
            shown_field_name(name), "unknown field (allowed: task_id, submitted_at, metadata)"
        )
        for name in entry
        if name not in REGISTRATION_FIELDS
    ]

    task_id = _check_task_id(raw_task_id, errors)
    submitted_at = _check_submitted_at(entry.get("submitted_at"), now, ttl, errors)
    metadata_json = check_metadata(entry.get("metadata"), errors)

    if errors or task_id is None or submitted_at is None or metadata_json is None:
        return Rejection(echoed_task_id, tuple(errors))
    return Registration(
        task_id=task_id,
        submitted_at=submitted_at,
        expires_at=submitted_at + ttl,
        metadata_json=metadata_json,
    )


def parse_rfc3339(text: str) -> datetime | None:
    """The instant an RFC 3339 date-time names, in UTC; None when the text is not one (including
    a date-time without an offset, and impossible dates or times such as a leap second)."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    offset = match["offset"]
    # Python keeps microseconds; finer digits are dropped, which RFC 3339 allows a reader to do.
    fraction = (match["fraction"] or "0")[:6].ljust(6, "0")
    normalised = (
        f"{match['date']}T{match['time']}.{fraction}{'+00:00' if offset in ('Z', 'z') else offset}"
    )
    try:
        parsed = datetime.fromisoformat(normalised)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _check_task_id(value: object, errors: list[FieldError]) -> str | None:
    if value is None:
        errors.append(FieldError("task_id", "is required"))
        return None
    if not isinstance(value, str):
        errors.append(FieldError("task_id", f"must be a string, not {json_type(value)}"))
        return None
    if TASK_ID_PATTERN.fullmatch(value) is None:
        errors.append(FieldError("task_id", TASK_ID_RULE))
        return None
    return value


def _check_submitted_at(
    value: object, now: datetime, ttl: timedelta, errors: list[FieldError]
) -> datetime | None:
    if value is None:
        return now.astimezone(UTC)
    if not isinstance(value, str):
        errors.append(
            FieldError("submitted_at", f"must be an RFC 3339 string, not {json_type(value)}")
        )
        return None
    submitted_at = parse_rfc3339(value)
    if submitted_at is None:
        errors.append(
            FieldError(
                "submitted_at",
                "must be an RFC 3339 date-time with a timezone, e.g. 2026-01-31T09:30:00Z",
            )
        )
        return None
    if submitted_at > now + CLOCK_SKEW:
        errors.append(
            FieldError(
                "submitted_at",
                f"is in the future (more than {CLOCK_SKEW.total_seconds():g} s ahead of "
                "the server clock)",
            )
        )
        return None
    if submitted_at + ttl <= now:
        errors.append(
            FieldError(
                "submitted_at",
                f"is older than the task validity ({ttl.total_seconds():g} s): the task_id "
                "has already expired upstream",
            )
        )
        return None
    return submitted_at


def check_metadata(value: object, errors: list[FieldError]) -> str | None:
    """The metadata's compact JSON text (`{}` when absent), or None with the broken rule added to
    `errors`; shared by task registration and check submission."""
    if value is None:
        return "{}"
    if not isinstance(value, dict):
        errors.append(FieldError("metadata", f"must be a JSON object, not {json_type(value)}"))
        return None
    problem = _metadata_problem(value)
    if problem is not None:
        errors.append(FieldError("metadata", problem))
        return None
    # A lone surrogate in a string is a ValueError here: UTF-8 cannot carry it.
    try:
        text = compact_json(value)
        size = len(text.encode("utf-8"))
    except (TypeError, ValueError):
        errors.append(FieldError("metadata", "must hold only JSON values"))
        return None
    if size > METADATA_MAX_BYTES:
        errors.append(
            FieldError(
                "metadata",
                f"is {size} bytes as compact UTF-8 JSON; at most {METADATA_MAX_BYTES} are allowed",
            )
        )
        return None
    return text


def _metadata_problem(root: dict[Any, Any]) -> str | None:
    """The first reason the value cannot be stored as JSONB, walking it without recursion."""
    pending: list[tuple[object, int]] = [(root, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list) and depth > METADATA_MAX_DEPTH:
            return f"nests objects and arrays deeper than {METADATA_MAX_DEPTH} levels"
        if isinstance(value, str):
            if "\x00" in value:
                return "strings must not contain the NUL character (\\u0000)"
        elif isinstance(value, float):
            if not math.isfinite(value):
                return "numbers must be finite"
        elif isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    return "object keys must be strings"
                if "\x00" in key:
                    return "object keys must not contain the NUL character (\\u0000)"
                pending.append((item, depth + 1))
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)
    return None


def json_type(value: object) -> str:
    """How a refusal names the JSON type of a value it did not expect ("a string", "null")."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, str):
        return "a string"
    return "null" if value is None else type(value).__name__


def shown_field_name(name: object) -> str:
    """A name from the client, cut to 64 characters for a refusal's text."""
    text = str(name)
    return text if len(text) <= _FIELD_NAME_SHOWN else text[:_FIELD_NAME_SHOWN] + "..."
