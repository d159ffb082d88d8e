"""List answers: `{"data": [...], "next_cursor": ...}`, a `limit` of 1-500 (default 50, both in
service/features/paging.py) refused when out of range, and opaque cursors refused (422) when
malformed."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, Field

from service.api.errors import FieldProblem, invalid_input
from service.features.paging import PAGE_SIZE_MAX

MAX_ROW_ID = 2**63 - 1

LimitQuery = Annotated[
    int,
    Query(
        ge=1,
        le=PAGE_SIZE_MAX,
        description=f"Page size, 1-{PAGE_SIZE_MAX}; out of range answers 422.",
    ),
]
CursorQuery = Annotated[
    str | None,
    Query(
        max_length=200,
        description="The `next_cursor` of the previous page; omit it for the first page.",
    ),
]

T = TypeVar("T")

_CURSOR_CHARS = re.compile(r"[A-Za-z0-9_-]{1,200}")
_ROW_CURSOR = re.compile(r"r:([1-9][0-9]{0,18})")


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


def encode_row_cursor(row_id: int) -> str:
    """An opaque cursor naming the position after the row with this id."""
    return base64.urlsafe_b64encode(f"r:{row_id}".encode("ascii")).decode("ascii").rstrip("=")


def decode_row_cursor(cursor: str) -> int:
    """The row id a cursor from `encode_row_cursor` names; 422 for anything else."""
    if _CURSOR_CHARS.fullmatch(cursor):
        try:
            decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            match = _ROW_CURSOR.fullmatch(decoded.decode("ascii"))
        except (binascii.Error, UnicodeDecodeError, ValueError):
            match = None
        if match is not None and int(match[1]) <= MAX_ROW_ID:
            return int(match[1])
    raise invalid_input(
        "cursor is not one this API issued: pass the next_cursor of the previous page",
        [FieldProblem(field="query.cursor", message="malformed cursor")],
    )
