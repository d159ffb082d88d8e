"""JSON text of accepted input: integers of any size written and read back whole, everything
else exactly as orjson does it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.jsontext import compact_json, json_bytes, parse_json

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
def test_any_json_value_is_written_and_read_back_unchanged(value: Any) -> None:
    assert parse_json(json_bytes(value)) == value
    assert parse_json(compact_json(value)) == value
    assert json.loads(json_bytes(value, indent=True)) == value


@given(json_values)
def test_what_orjson_can_write_is_written_as_orjson_writes_it(value: Any) -> None:
    try:
        expected = orjson.dumps(value)
    except orjson.JSONEncodeError:
        return
    assert json_bytes(value) == expected


@pytest.mark.parametrize("number", [2**64, -(2**63) - 1, 10**20, 123456789012345678901234567890])
def test_integers_beyond_64_bits_are_kept_whole(number: int) -> None:
    text = json_bytes({"n": number, "at": datetime(2026, 12, 6, 9, 30, tzinfo=UTC)}, utc_z=True)
    assert text == f'{{"n":{number},"at":"2026-12-06T09:30:00Z"}}'.encode()
    assert parse_json(text)["n"] == number
    assert parse_json(text.decode())["n"] == number


def test_indented_text_with_a_big_integer_is_indented_as_orjson_indents() -> None:
    assert json_bytes({"a": [1, 10**20]}, indent=True).decode() == (
        '{\n  "a": [\n    1,\n    100000000000000000000\n  ]\n}'
    )


@pytest.mark.parametrize(
    "text",
    ['{"n": NaN, "big": 123456789012345678901234567890}', '{"big": 123456789012345678901234567890'],
)
def test_orjson_decides_what_is_valid_even_when_the_standard_library_reads_it(text: str) -> None:
    with pytest.raises(orjson.JSONDecodeError):
        parse_json(text)


def test_a_twenty_digit_string_is_read_as_a_string() -> None:
    assert parse_json('{"phone": "52155123456789012345", "n": 1.5}') == {
        "phone": "52155123456789012345",
        "n": 1.5,
    }
