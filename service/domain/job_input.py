"""A check job's request, read into what the job holds: the items to check, the items that cannot
be checked (rejections, by line), and the job's options; or the whole request refused.

Pure: `job_from_json` takes the parsed JSON body (read the way every route reads one:
`service.api.bodies`); `job_from_csv` (`service.domain.job_csv`) the raw bytes of a `text/csv`
body and its query parameters, by the rules held here. Both take the phone number rule as a
parameter (`NumberReader`): the one rule of `POST /v1/checks`, so that a number is accepted,
refused and normalised the same way everywhere. Every rule of an item is the rule of the same
field elsewhere (`check_metadata` of tasks and checks; `max_age_s` and `recheck` of
`service.domain.check_options` and `service.domain.rechecks`).

The request as a whole (the contract's order; `JobRefused` with every broken rule):
- Over `JOB_BODY_MAX_BYTES` (16 MiB): 413. The edge must enforce it while reading the body, so
  that an oversized one is never held whole; `job_from_csv` checks it again for callers (the
  portal's upload) that hold the bytes already.
- More than `JOB_ITEMS_MAX` (100,000) items, a body that is not `{"items": [...]}`, an option
  out of its range, an unknown field or query parameter, bytes that are not UTF-8, a CSV without
  a `phone_number` column, with broken quoting, or with a header row and no items: 422.
- Nothing to check (every item rejected): 422, with the first `REJECTIONS_SHOWN` rejections.

`line`: an item's position from 1. In JSON, its index in `items` plus one. In CSV, the record's
number after the header row; a record of empty cells only (a blank line, `,,`) keeps its number
but is no item, so that line N stays the spreadsheet's row N + 1 (a quoted cell may span lines of
the file: records are counted, not lines of text).

An item (JSON): `phone_number` (required, a string; the number rule decides the rest),
`reference` (optional: 1-255 characters, no control characters), `metadata` (optional; the rules
of tasks). An unknown field, like any broken rule, rejects the item with every broken rule in
its `detail`; its `reference` is echoed when it was valid.

Memory: items are slotted frozen dataclasses, about 220 bytes each with their strings
(`bench/job_input.py` prints the figures).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from service.domain.check_options import check_max_age_s
from service.domain.intake import FieldError, check_metadata, json_type, shown_field_name
from service.domain.rechecks import RecheckPolicy, check_recheck

JOB_BODY_MAX_BYTES = 16 * 1024 * 1024
JOB_ITEMS_MAX = 100_000
JOB_FIELDS = ("items", "name", "max_age_s", "recheck", "start")
ITEM_FIELDS = ("phone_number", "reference", "metadata")
REFERENCE_MAX_LENGTH = 255
NAME_MAX_LENGTH = 255
# How many rejections a refusal of a job with nothing to check lists.
REJECTIONS_SHOWN = 10

# The normalised digits of a number, or the rule it broke (a FieldError naming `phone_number`).
NumberReader = Callable[[str], "str | FieldError"]

_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_ITEM_SHAPE = "{phone_number, reference?, metadata?}"
_JSON_SHAPE = '{"items": [' + _ITEM_SHAPE + ", ...]}"


@dataclass(frozen=True, slots=True)
class JobItem:
    """An item that can be checked. `phone_number` is the normalised number: never log it, and
    keep it only as the contract says (encrypted until submitted)."""

    line: int
    phone_number: str
    reference: str | None
    metadata_json: str


@dataclass(frozen=True, slots=True)
class ItemRejection:
    """An item that cannot be checked, as `GET .../rejections` lists it."""

    line: int
    reference: str | None
    detail: str


@dataclass(frozen=True, slots=True)
class JobOptions:
    name: str | None = None
    max_age_s: int = 0
    recheck: RecheckPolicy | None = None
    # False: a draft, which shows its estimate and waits for `start`.
    start: bool = True


@dataclass(frozen=True, slots=True)
class JobRequest:
    """A job that can be created: its accepted items and its rejections, each in input order."""

    options: JobOptions
    items: tuple[JobItem, ...]
    rejections: tuple[ItemRejection, ...]

    @property
    def item_count(self) -> int:
        """`counts.items`: every item, rejected ones included."""
        return len(self.items) + len(self.rejections)


@dataclass(frozen=True, slots=True)
class JobRefused:
    """A request that creates nothing: 413 (too large) or 422, with every broken rule."""

    status: int
    errors: tuple[FieldError, ...]

    @property
    def detail(self) -> str:
        return "; ".join(error.describe() for error in self.errors)


def job_from_json(body: object, number_rule: NumberReader) -> JobRequest | JobRefused:
    """Read a JSON job body (already parsed, within the size limit)."""
    if not isinstance(body, dict):
        return refusal(FieldError(None, f"the request body must be a JSON object {_JSON_SHAPE}"))
    errors = [
        FieldError(
            shown_field_name(name),
            "unknown field (allowed: items, name, max_age_s, recheck, start)",
        )
        for name in body
        if name not in JOB_FIELDS
    ]
    entries = _check_items_array(body.get("items"), errors)
    name = check_text(body.get("name"), "name", NAME_MAX_LENGTH, errors)
    max_age_s = check_max_age_s(body.get("max_age_s"), errors)
    recheck = check_recheck(body.get("recheck"), errors)
    start = _check_start(body.get("start"), errors)
    if errors or entries is None or max_age_s is None:
        return refusal(*errors)
    options = JobOptions(name=name, max_age_s=max_age_s, recheck=recheck, start=start)
    return job_of(
        options,
        (_item_from_json(line, entry, number_rule) for line, entry in enumerate(entries, 1)),
    )


def job_of(
    options: JobOptions, outcomes: Iterable[JobItem | ItemRejection]
) -> JobRequest | JobRefused:
    items: list[JobItem] = []
    rejections: list[ItemRejection] = []
    for outcome in outcomes:
        if isinstance(outcome, JobItem):
            items.append(outcome)
        else:
            rejections.append(outcome)
    if not items:
        return refusal(
            FieldError("items", f"no item can be checked: all {len(rejections)} are rejected"),
            *(
                FieldError(None, f"line {rejection.line}: {rejection.detail}")
                for rejection in rejections[:REJECTIONS_SHOWN]
            ),
        )
    return JobRequest(options=options, items=tuple(items), rejections=tuple(rejections))


def _check_items_array(value: object, errors: list[FieldError]) -> list[object] | None:
    if value is None:
        errors.append(FieldError("items", f"is required: an array of {_ITEM_SHAPE} objects"))
        return None
    if not isinstance(value, list):
        errors.append(
            FieldError(
                "items", f"must be an array of {_ITEM_SHAPE} objects, not {json_type(value)}"
            )
        )
        return None
    if not value:
        errors.append(FieldError("items", "must hold at least one item"))
        return None
    if len(value) > JOB_ITEMS_MAX:
        errors.append(too_many_items(str(len(value))))
        return None
    return value


def _item_from_json(line: int, entry: object, number_rule: NumberReader) -> JobItem | ItemRejection:
    if not isinstance(entry, dict):
        return ItemRejection(line, None, f"each item must be a JSON object {_ITEM_SHAPE}")
    errors = [
        FieldError(
            shown_field_name(name), "unknown field (allowed: phone_number, reference, metadata)"
        )
        for name in entry
        if name not in ITEM_FIELDS
    ]
    phone_number = check_number(entry.get("phone_number"), number_rule, errors)
    reference = check_text(entry.get("reference"), "reference", REFERENCE_MAX_LENGTH, errors)
    metadata_json = check_metadata(entry.get("metadata"), errors)
    if errors or phone_number is None or metadata_json is None:
        return ItemRejection(line, reference, item_detail(errors))
    return JobItem(line, phone_number, reference, metadata_json)


def check_number(value: object, number_rule: NumberReader, errors: list[FieldError]) -> str | None:
    if value is None:
        errors.append(FieldError("phone_number", "is required"))
        return None
    if not isinstance(value, str):
        errors.append(FieldError("phone_number", f"must be a string, not {json_type(value)}"))
        return None
    normalised = number_rule(value)
    if isinstance(normalised, FieldError):
        errors.append(normalised)
        return None
    return normalised


def check_text(value: object, field: str, max_length: int, errors: list[FieldError]) -> str | None:
    """A short text for people (a job's name, an item's reference); None when absent, or when
    broken (then `errors` says so)."""
    if value is None:
        return None
    rule = f"must be 1-{max_length} characters without control characters"
    if not isinstance(value, str):
        errors.append(FieldError(field, f"{rule}, not {json_type(value)}"))
        return None
    if not 1 <= len(value) <= max_length:
        errors.append(FieldError(field, f"{rule}; this one has {len(value)}"))
        return None
    if _CONTROL_CHARACTER.search(value) is not None:
        errors.append(FieldError(field, f"{rule} (U+0000-U+001F, U+007F)"))
        return None
    if _SURROGATE.search(value) is not None:  # a JSON escape such as \ud800 alone: not Unicode
        errors.append(FieldError(field, "must be Unicode text (it holds a lone surrogate)"))
        return None
    return value


def _check_start(value: object, errors: list[FieldError], field: str = "start") -> bool:
    if value is None:
        return True
    if not isinstance(value, bool):
        errors.append(FieldError(field, f"must be true or false, not {json_type(value)}"))
        return True
    return value


def too_many_items(found: str) -> FieldError:
    return FieldError("items", f"holds {found} items; a job may hold at most {JOB_ITEMS_MAX}")


def item_detail(errors: list[FieldError]) -> str:
    return "; ".join(error.describe() for error in errors)


def refusal(*errors: FieldError) -> JobRefused:
    return JobRefused(422, errors)
