"""The request and response models of /v1/check-jobs and the OpenAPI text of a job's creation
(the Idempotency-Key header, a CSV job's query parameters, the JSON and CSV bodies): what the
schema shows a client. The limits are the domain's (service/domain/job_input.py), which checks
every rule again whatever the body's media type."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.api.checks import RecheckIn
from service.domain.check_options import MAX_AGE_MAX_S
from service.domain.checks import IDEMPOTENCY_KEY_MAX_LENGTH
from service.domain.intake import METADATA_MAX_BYTES
from service.domain.job_input import (
    JOB_BODY_MAX_BYTES,
    JOB_ITEMS_MAX,
    NAME_MAX_LENGTH,
    REFERENCE_MAX_LENGTH,
)
from service.domain.phone_numbers import EXAMPLE, PHONE_NUMBER_MAX_CHARS

CSV_MEDIA_TYPE = "text/csv"
NDJSON_MEDIA_TYPE = "application/x-ndjson"

# Text for people (a name, a reference): no control characters (service/domain/job_input.py).
NO_CONTROL_CHARACTERS = "^[^\\x00-\\x1f\\x7f]+$"


class CheckJobItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone_number: str = Field(
        max_length=PHONE_NUMBER_MAX_CHARS,
        description="As for `POST /v1/checks`; an item whose number is not possible is "
        "rejected alone (listed in `GET .../rejections`), the others run.",
        examples=[EXAMPLE],
    )
    reference: str | None = Field(
        default=None,
        min_length=1,
        max_length=REFERENCE_MAX_LENGTH,
        pattern=NO_CONTROL_CHARACTERS,
        description="Your id for the row, echoed in results and rejections.",
    )
    metadata: dict[str, Any] | None = Field(
        default=None,
        description=f"Any JSON object of at most {METADATA_MAX_BYTES} bytes; given to the item's "
        "task.",
    )


class CheckJobIn(BaseModel):
    """A list of numbers to check. Unknown fields are refused (422)."""

    model_config = ConfigDict(extra="forbid")

    items: list[CheckJobItemIn] = Field(min_length=1, max_length=JOB_ITEMS_MAX)
    name: str | None = Field(
        default=None, min_length=1, max_length=NAME_MAX_LENGTH, pattern=NO_CONTROL_CHARACTERS
    )
    max_age_s: int | None = Field(
        default=0,
        ge=0,
        le=MAX_AGE_MAX_S,
        description="A number this client checked with a final answer younger than this is "
        "answered from that answer, with no upstream call.",
    )
    recheck: RecheckIn | None = None
    start: bool | None = Field(
        default=True,
        description="false: a draft, which shows `counts.to_submit` and waits (null: true).",
    )


class RejectionOut(BaseModel):
    line: int
    reference: str | None
    detail: str


class ResultOut(BaseModel):
    line: int
    reference: str | None
    phone_number_masked: str
    state: str = Field(
        description="The answering task's state (pending, completed, failed, expired, "
        "cancelled), or, with no task, the item's: waiting, refused, unknown, not_submitted."
    )
    phone_status: str | None
    verdict: str | None
    cached: bool
    task_id: str | None
    completed_at: str | None = Field(json_schema_extra={"format": "date-time"})


_IDEMPOTENCY_PARAMETER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": f"1-{IDEMPOTENCY_KEY_MAX_LENGTH} printable ASCII characters. The same key "
    "with the same body answers 201 with that job as it is now and creates nothing; with another "
    "body, 422.",
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": IDEMPOTENCY_KEY_MAX_LENGTH,
        "pattern": "^[\\x20-\\x7e]+$",
    },
}

_CSV_PARAMETERS = [
    {
        "name": "name",
        "in": "query",
        "required": False,
        "description": "A CSV job's name (a JSON job gives it in the body).",
        "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": NAME_MAX_LENGTH,
            "pattern": NO_CONTROL_CHARACTERS,
        },
    },
    {
        "name": "max_age_s",
        "in": "query",
        "required": False,
        "description": "A CSV job's `max_age_s`.",
        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_AGE_MAX_S},
    },
    {
        "name": "start",
        "in": "query",
        "required": False,
        "description": "A CSV job's `start` (`true` or `false`).",
        "schema": {"type": "string", "enum": ["true", "false"]},
    },
]


# The creation's OpenAPI text beyond the models: its parameters and both bodies.
CREATE_OPENAPI: dict[str, Any] = {
    "parameters": [_IDEMPOTENCY_PARAMETER, *_CSV_PARAMETERS],
    "requestBody": {
        "required": True,
        "description": f"Up to {JOB_ITEMS_MAX} items and {JOB_BODY_MAX_BYTES} bytes (16 MiB; "
        "larger answers 413). CSV: UTF-8 (a BOM allowed), a header row with a "
        "`phone_number` column and optionally `reference`; the options as query parameters.",
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/CheckJobIn"},
                "example": {
                    "name": "november book",
                    "items": [
                        {"phone_number": EXAMPLE, "reference": "loan-1"},
                        {"phone_number": "+57 301 234 5678", "reference": "loan-2"},
                    ],
                    "max_age_s": 86400,
                },
            },
            CSV_MEDIA_TYPE: {
                "schema": {"type": "string"},
                "example": "phone_number,reference\r\n+52 55 1234 5678,loan-1\r\n",
            },
        },
    },
}
