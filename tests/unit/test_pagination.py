"""Opaque list cursors (service/api/pagination.py): what one names comes back, and anything this
API did not issue answers 422 with the words to act on."""

from __future__ import annotations

import pytest

from service.api.errors import ApiProblem
from service.api.pagination import MAX_ROW_ID, decode_row_cursor, encode_row_cursor


@pytest.mark.parametrize("row_id", [1, 42, 2**40, MAX_ROW_ID])
def test_a_cursor_names_the_row_it_was_made_from(row_id: int) -> None:
    cursor = encode_row_cursor(row_id)

    assert "=" not in cursor
    assert decode_row_cursor(cursor) == row_id


@pytest.mark.parametrize(
    "cursor",
    ["", "not a cursor", "eDox", encode_row_cursor(1) + "!", "cjo5MjIzMzcyMDM2ODU0Nzc1ODA4"],
)
def test_a_cursor_this_api_did_not_issue_answers_422(cursor: str) -> None:
    with pytest.raises(ApiProblem) as refused:
        decode_row_cursor(cursor)

    assert refused.value.status == 422
    assert "next_cursor" in refused.value.detail
