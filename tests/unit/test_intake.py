"""The registration rules of service.domain.intake, table-driven, with hypothesis for the ranges."""

from __future__ import annotations

import json
import string
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.intake import (
    CLOCK_SKEW,
    METADATA_MAX_BYTES,
    METADATA_MAX_DEPTH,
    Registration,
    Rejection,
    parse_rfc3339,
    validate_registration,
)
from service.domain.jsontext import compact_json

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
TTL = timedelta(hours=24)
TASK_ID_ALPHABET = string.ascii_letters + string.digits + "._:-"


def check(entry: object, now: datetime = NOW, ttl: timedelta = TTL) -> Registration | Rejection:
    return validate_registration(entry, now=now, ttl=ttl)


def rejected_fields(entry: object) -> list[str | None]:
    outcome = check(entry)
    assert isinstance(outcome, Rejection), outcome
    return [error.field for error in outcome.errors]


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_minimal_entry_defaults_submitted_at_to_now_and_metadata_to_empty() -> None:
    outcome = check({"task_id": "T-123"})
    assert outcome == Registration(
        task_id="T-123", submitted_at=NOW, expires_at=NOW + TTL, metadata_json="{}"
    )


def test_full_entry_is_kept_with_submitted_at_in_utc_and_compact_metadata() -> None:
    outcome = check(
        {
            "task_id": "a.b:c_d-1",
            "submitted_at": "2026-11-26T13:30:00+02:00",
            "metadata": {"order": "Ä-17", "n": [1, 2.5, None, True]},
        }
    )
    assert isinstance(outcome, Registration)
    assert outcome.submitted_at == datetime(2026, 11, 26, 11, 30, tzinfo=UTC)
    assert outcome.submitted_at.tzinfo is UTC
    assert outcome.expires_at == outcome.submitted_at + TTL
    assert outcome.metadata_json == '{"order":"Ä-17","n":[1,2.5,null,true]}'


def test_null_submitted_at_and_null_metadata_mean_absent() -> None:
    outcome = check({"task_id": "T", "submitted_at": None, "metadata": None})
    assert isinstance(outcome, Registration)
    assert outcome.submitted_at == NOW
    assert outcome.metadata_json == "{}"


@pytest.mark.parametrize(
    ("entry", "fields"),
    [
        # the entry itself
        ("T-1", [None]),
        (["T-1"], [None]),
        (None, [None]),
        (17, [None]),
        # task_id
        ({}, ["task_id"]),
        ({"task_id": None}, ["task_id"]),
        ({"task_id": ""}, ["task_id"]),
        ({"task_id": "x" * 129}, ["task_id"]),
        ({"task_id": "has space"}, ["task_id"]),
        ({"task_id": "slash/inside"}, ["task_id"]),
        ({"task_id": "nul\x00"}, ["task_id"]),
        ({"task_id": "ünïcode"}, ["task_id"]),
        ({"task_id": "trailing-newline\n"}, ["task_id"]),
        ({"task_id": 123}, ["task_id"]),
        ({"task_id": True}, ["task_id"]),
        ({"task_id": ["T"]}, ["task_id"]),
        ({"task_id": {"id": "T"}}, ["task_id"]),
        # submitted_at
        ({"task_id": "T", "submitted_at": "2026-11-26T11:00:00"}, ["submitted_at"]),
        ({"task_id": "T", "submitted_at": "2026-11-26"}, ["submitted_at"]),
        ({"task_id": "T", "submitted_at": "yesterday"}, ["submitted_at"]),
        ({"task_id": "T", "submitted_at": ""}, ["submitted_at"]),
        ({"task_id": "T", "submitted_at": "2026-11-26T11:00:60Z"}, ["submitted_at"]),
        ({"task_id": "T", "submitted_at": "2026-02-30T11:00:00Z"}, ["submitted_at"]),
        ({"task_id": "T", "submitted_at": "2026-11-26T11:00:00+24:00"}, ["submitted_at"]),
        ({"task_id": "T", "submitted_at": "2026-11-26T11:00:00\x00Z"}, ["submitted_at"]),
        ({"task_id": "T", "submitted_at": 1764158400}, ["submitted_at"]),
        ({"task_id": "T", "submitted_at": "2026-11-26T12:00:05.001Z"}, ["submitted_at"]),
        ({"task_id": "T", "submitted_at": "9999-12-31T23:59:59Z"}, ["submitted_at"]),
        ({"task_id": "T", "submitted_at": "2026-11-25T12:00:00Z"}, ["submitted_at"]),
        ({"task_id": "T", "submitted_at": "0001-01-01T00:00:00+01:00"}, ["submitted_at"]),
        # metadata
        ({"task_id": "T", "metadata": []}, ["metadata"]),
        ({"task_id": "T", "metadata": "text"}, ["metadata"]),
        ({"task_id": "T", "metadata": 5}, ["metadata"]),
        ({"task_id": "T", "metadata": {"k": "nul\x00"}}, ["metadata"]),
        ({"task_id": "T", "metadata": {"nul\x00": 1}}, ["metadata"]),
        ({"task_id": "T", "metadata": {"deep": [[["nul\x00"]]]}}, ["metadata"]),
        ({"task_id": "T", "metadata": {"x": float("nan")}}, ["metadata"]),
        ({"task_id": "T", "metadata": {"x": float("inf")}}, ["metadata"]),
        ({"task_id": "T", "metadata": {"x": b"bytes"}}, ["metadata"]),
        ({"task_id": "T", "metadata": {"lone surrogate": "\ud800"}}, ["metadata"]),
        ({"task_id": "T", "metadata": {1: "int key"}}, ["metadata"]),
        ({"task_id": "T", "metadata": {"x": "a" * METADATA_MAX_BYTES}}, ["metadata"]),
        ({"task_id": "T", "metadata": nested(METADATA_MAX_DEPTH + 1)}, ["metadata"]),
        # unknown fields, and several faults at once
        ({"task_id": "T", "metdata": {}}, ["metdata"]),
        ({"task_id": "T", "x" * 500: 1}, ["x" * 64 + "..."]),
        (
            {"task_id": 1, "submitted_at": "x", "metadata": [], "y": 0},
            ["y", "task_id", "submitted_at", "metadata"],
        ),
    ],
)
def test_each_broken_rule_is_rejected_naming_its_field(
    entry: object, fields: list[str | None]
) -> None:
    assert rejected_fields(entry) == fields


def test_rejection_echoes_a_string_task_id_even_an_invalid_one() -> None:
    outcome = check({"task_id": "bad id", "metadata": 3})
    assert isinstance(outcome, Rejection)
    assert outcome.task_id == "bad id"
    assert outcome.detail.startswith("task_id: must be 1-128 characters")
    assert "; metadata: must be a JSON object, not a number" in outcome.detail


@pytest.mark.parametrize("task_id", [5, None, ["T"], True, {"a": 1}])
def test_rejection_echoes_null_for_a_task_id_that_is_not_a_string(task_id: object) -> None:
    outcome = check({"task_id": task_id})
    assert isinstance(outcome, Rejection)
    assert outcome.task_id is None


@pytest.mark.parametrize(
    ("submitted_at", "accepted"),
    [
        (NOW + CLOCK_SKEW, True),
        (NOW + CLOCK_SKEW + timedelta(microseconds=1), False),
        (NOW, True),
        (NOW - TTL + timedelta(microseconds=1), True),
        (NOW - TTL, False),
        (NOW - TTL - timedelta(days=1), False),
    ],
)
def test_submitted_at_boundaries(submitted_at: datetime, accepted: bool) -> None:
    text = submitted_at.isoformat().replace("+00:00", "Z")
    outcome = check({"task_id": "T", "submitted_at": text})
    assert isinstance(outcome, Registration) is accepted


def test_metadata_of_exactly_the_limit_is_accepted_and_one_byte_more_is_not() -> None:
    overhead = len(compact_json({"k": ""}))
    exact = {"k": "a" * (METADATA_MAX_BYTES - overhead)}
    assert isinstance(check({"task_id": "T", "metadata": exact}), Registration)
    over = {"k": "a" * (METADATA_MAX_BYTES - overhead + 1)}
    assert isinstance(check({"task_id": "T", "metadata": over}), Rejection)


def test_metadata_size_counts_utf8_bytes_not_characters() -> None:
    overhead = len(compact_json({"k": ""}))
    # "é" is two bytes in UTF-8: half as many characters already fill the limit.
    fits = {"k": "é" * ((METADATA_MAX_BYTES - overhead) // 2)}
    too_big = {"k": "é" * ((METADATA_MAX_BYTES - overhead) // 2 + 1)}
    assert isinstance(check({"task_id": "T", "metadata": fits}), Registration)
    outcome = check({"task_id": "T", "metadata": too_big})
    assert isinstance(outcome, Rejection)
    assert f"at most {METADATA_MAX_BYTES}" in outcome.detail


def test_metadata_may_nest_to_the_depth_limit() -> None:
    assert isinstance(check({"task_id": "T", "metadata": nested(METADATA_MAX_DEPTH)}), Registration)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-26T12:00:00Z", datetime(2026, 11, 26, 12, tzinfo=UTC)),
        ("2026-11-26t12:00:00z", datetime(2026, 11, 26, 12, tzinfo=UTC)),
        ("2026-11-26 12:00:00+00:00", datetime(2026, 11, 26, 12, tzinfo=UTC)),
        ("2026-11-26T12:00:00-05:30", datetime(2026, 11, 26, 17, 30, tzinfo=UTC)),
        ("2026-11-26T12:00:00.5Z", datetime(2026, 11, 26, 12, 0, 0, 500000, tzinfo=UTC)),
        ("2026-11-26T12:00:00.123456789Z", datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=UTC)),
        ("2026-11-26T12:00:00", None),
        ("2026-11-26T12:00Z", None),
        ("2026-11-26T12:00:00+0100", None),
        ("2026-11-26T12:00:00.Z", None),
        ("20261126T120000Z", None),
        (" 2026-11-26T12:00:00Z", None),
        ("2026-11-26T12:00:00Z\n", None),
        ("2026-13-01T00:00:00Z", None),
        ("0000-01-01T00:00:00Z", None),
        ("0001-01-01T00:00:00+01:00", None),
        ("٢٠٢٦-11-26T12:00:00Z", None),
    ],
)
def test_parse_rfc3339(text: str, expected: datetime | None) -> None:
    assert parse_rfc3339(text) == expected


@given(st.text(alphabet=TASK_ID_ALPHABET, min_size=1, max_size=128))
def test_every_task_id_of_the_allowed_alphabet_and_length_is_accepted(task_id: str) -> None:
    outcome = check({"task_id": task_id})
    assert isinstance(outcome, Registration)
    assert outcome.task_id == task_id


@given(st.text(max_size=200))
def test_a_task_id_is_accepted_exactly_when_it_fits_the_rule(task_id: str) -> None:
    fits = 1 <= len(task_id) <= 128 and all(c in TASK_ID_ALPHABET for c in task_id)
    assert isinstance(check({"task_id": task_id}), Registration) is fits


@given(
    st.integers(min_value=-2 * 86_400_000_000, max_value=60_000_000),
    st.integers(min_value=-14 * 60, max_value=14 * 60),
)
def test_submitted_at_is_accepted_exactly_within_ttl_and_skew(
    offset_us: int, zone_minutes: int
) -> None:
    instant = NOW + timedelta(microseconds=offset_us)
    zone = timezone(timedelta(minutes=zone_minutes))
    outcome = check({"task_id": "T", "submitted_at": instant.astimezone(zone).isoformat()})
    within = NOW - TTL < instant <= NOW + CLOCK_SKEW
    assert isinstance(outcome, Registration) is within
    if isinstance(outcome, Registration):
        assert outcome.submitted_at == instant
        assert outcome.expires_at == instant + TTL


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@given(st.dictionaries(st.text(), json_values, max_size=8))
def test_metadata_is_accepted_exactly_when_storable_and_small_enough(
    metadata: dict[str, Any],
) -> None:
    storable = _storable(metadata, depth=1)
    fits = storable and len(compact_json(metadata).encode()) <= METADATA_MAX_BYTES
    outcome = check({"task_id": "T", "metadata": metadata})
    assert isinstance(outcome, Registration) is (storable and fits)
    if isinstance(outcome, Registration):
        assert json.loads(outcome.metadata_json) == metadata


def _storable(value: object, depth: int) -> bool:
    """An independent statement of what Postgres JSONB takes and the depth rule allows."""
    if isinstance(value, str):
        return "\x00" not in value
    if isinstance(value, float):
        return value not in (float("inf"), float("-inf"))
    if isinstance(value, dict):
        return depth <= METADATA_MAX_DEPTH and all(
            _storable(k, depth) and _storable(v, depth + 1) for k, v in value.items()
        )
    if isinstance(value, list):
        return depth <= METADATA_MAX_DEPTH and all(_storable(v, depth + 1) for v in value)
    return True


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ({}, "{}"),
        ({"a": [1, 2.5, None, True], "b": {"c": "d"}}, '{"a":[1,2.5,null,true],"b":{"c":"d"}}'),
        ({"ü": "漢字 😀"}, '{"ü":"漢字 😀"}'),
        ({"q": 'say "hi"\\\n'}, '{"q":"say \\"hi\\"\\\\\\n"}'),
        (
            {"big": 10**30, "neg": -(2**64)},
            '{"big":1000000000000000000000000000000,"neg":-18446744073709551616}',
        ),
    ],
)
def test_compact_json_has_no_spaces_keeps_unicode_and_any_integer(value: object, text: str) -> None:
    assert compact_json(value) == text
