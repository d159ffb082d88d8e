"""JSON text of values that came in as JSON: orjson (several times faster than the standard
library), except for integers beyond 64 bits. JSON allows any integer, phonebridge accepts them
in metadata, and PostgreSQL's jsonb keeps them (it even writes `1e20` back as
100000000000000000000), but orjson refuses them; the standard library writes them exactly. Every
place that writes accepted input back out goes through here, so that no stored value can make a
page fail."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

# orjson parses an integer beyond 64 bits as a float (1.2e29, losing the digits). Every such
# integer has at least 20 digits, or 19 after a minus sign (below -2**63); text holding such a
# run is read again by the standard library.
_LONG_INTEGER = re.compile(r"\d{20}|-\d{19}")
_LONG_INTEGER_BYTES = re.compile(rb"\d{20}|-\d{19}")


def json_bytes(value: object, *, utc_z: bool = False, indent: bool = False) -> bytes:
    """The JSON text of `value` as UTF-8: compact, or indented by two spaces; datetimes (and
    orjson's other native types) as orjson writes them, in UTC with a `Z` when `utc_z`."""
    option = (orjson.OPT_UTC_Z if utc_z else 0) | (orjson.OPT_INDENT_2 if indent else 0)
    try:
        return orjson.dumps(value, option=option)
    except orjson.JSONEncodeError:
        # Anything else orjson refuses, the standard library refuses too (TypeError, ValueError).
        return json.dumps(
            value,
            ensure_ascii=False,
            allow_nan=False,
            indent=2 if indent else None,
            separators=(",", ": ") if indent else (",", ":"),
            default=lambda native: orjson.loads(orjson.dumps(native, option=option)),
        ).encode()


def compact_json(value: object) -> str:
    """The compact JSON text of a value, the form whose UTF-8 size the metadata limit counts."""
    return json_bytes(value).decode()


def parse_json(text: str | bytes) -> Any:
    """A JSON value from its text, integers of any size kept whole. orjson decides what is valid
    (grammar, UTF-8, nesting depth, no NaN) and raises orjson.JSONDecodeError; text holding a run
    of digits that may be an integer beyond 64 bits is then read again by the standard library."""
    value = orjson.loads(text)
    pattern = _LONG_INTEGER if isinstance(text, str) else _LONG_INTEGER_BYTES
    if pattern.search(text) is None:  # type: ignore[arg-type]
        return value
    try:
        return json.loads(text)
    except RecursionError:  # nested deeper than the interpreter allows, but within orjson's
        return value


class RepeatedKey(ValueError):
    """An object of a request body names the same key twice (JSON parsers disagree on which one
    wins, so phonebridge takes neither)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def parse_request_json(text: bytes) -> Any:
    """A request body's JSON value, as strictly as phonebridge takes input: orjson's rules
    (orjson.JSONDecodeError), integers of any size kept whole, and no object naming a key twice
    (RepeatedKey). orjson keeps the last of repeated keys without a word, so the standard
    library reads the text again, with a check on each object (about 1 us per object)."""
    value = orjson.loads(text)
    try:
        return json.loads(text, object_pairs_hook=_distinct_keys)
    except RecursionError:  # nested deeper than the interpreter allows, but within orjson's
        return value


def _distinct_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise RepeatedKey(key)
            seen.add(key)
    return value
