"""A check job's results: one row per accepted item, in input order, and the two streamed forms
of `GET /v1/check-jobs/{id}/results` besides JSON pages: CSV and NDJSON.

Pure: the writers take an iterable of rows (the store's cursor, read as it goes) and give an
iterator of byte chunks for a streaming response, holding at most `rows_per_chunk` rows at a
time, so a result of any size streams in constant memory.

- The row (`ResultRow`, `RESULT_COLUMNS`): `line`, `reference`, `phone_number_masked`, `state`,
  `phone_status`, `verdict`, `cached`, `task_id`, `completed_at`. JSON pages and NDJSON show each
  value as given (`as_json`; null stays null); NDJSON is one compact JSON object a line, each
  ending in `\\n`, datetimes as the API writes them (RFC 3339 in UTC with a `Z`).
- CSV (RFC 4180): a header row of the column names, then one record per row, records ending in
  CRLF, a cell quoted when it holds a comma, a quote or a line break. null is an empty cell,
  `cached` is `true` or `false`, `completed_at` is written as in JSON. No BOM.
- CSV injection (OWASP): a cell that a spreadsheet would run as a formula (one starting with `=`,
  `+`, `-`, `@`, a tab or a carriage return) is written with a leading `'`, which a spreadsheet
  shows as text. Only text from outside can start so (a `reference`, a `task_id` such as
  `-1`, an upstream `phone_status`); the rule is applied to every cell all the same. NDJSON is
  for programs and keeps every value as given.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.domain.jsontext import json_bytes

RESULT_COLUMNS = (
    "line",
    "reference",
    "phone_number_masked",
    "state",
    "phone_status",
    "verdict",
    "cached",
    "task_id",
    "completed_at",
)
# What a spreadsheet takes as the start of a formula (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
ROWS_PER_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class ResultRow:
    """One accepted item's result. A duplicate shows its first item's answer; a cached item the
    earlier check's answer and `task_id`, with `cached` true."""

    line: int
    reference: str | None
    phone_number_masked: str
    state: str
    phone_status: str | None
    verdict: str | None
    cached: bool
    task_id: str | None
    completed_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        """The row as JSON pages and NDJSON show it: every value as given."""
        return {
            "line": self.line,
            "reference": self.reference,
            "phone_number_masked": self.phone_number_masked,
            "state": self.state,
            "phone_status": self.phone_status,
            "verdict": self.verdict,
            "cached": self.cached,
            "task_id": self.task_id,
            "completed_at": self.completed_at,
        }


def safe_csv_cell(text: str) -> str:
    """The cell as a spreadsheet may open it: a leading `'` before what would start a formula."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def results_csv(
    rows: Iterable[ResultRow], *, rows_per_chunk: int = ROWS_PER_CHUNK
) -> Iterator[bytes]:
    """The results as CSV, in UTF-8 chunks: the header row first, then `rows_per_chunk` records
    a chunk."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(RESULT_COLUMNS)
    yield _drained(buffer)
    in_buffer = 0
    for row in rows:
        writer.writerow([safe_csv_cell(cell) for cell in _csv_cells(row)])
        in_buffer += 1
        if in_buffer == rows_per_chunk:
            yield _drained(buffer)
            in_buffer = 0
    if in_buffer:
        yield _drained(buffer)


def results_ndjson(
    rows: Iterable[ResultRow], *, rows_per_chunk: int = ROWS_PER_CHUNK
) -> Iterator[bytes]:
    """The results as NDJSON, one object a line, `rows_per_chunk` lines a chunk."""
    lines: list[bytes] = []
    for row in rows:
        lines.append(json_bytes(row.as_json(), utc_z=True))
        if len(lines) == rows_per_chunk:
            yield b"\n".join(lines) + b"\n"
            lines.clear()
    if lines:
        yield b"\n".join(lines) + b"\n"


def _csv_cells(row: ResultRow) -> tuple[str, ...]:
    return (
        str(row.line),
        row.reference or "",
        row.phone_number_masked,
        row.state,
        row.phone_status or "",
        row.verdict or "",
        "true" if row.cached else "false",
        row.task_id or "",
        "" if row.completed_at is None else json_bytes(row.completed_at, utc_z=True)[1:-1].decode(),
    )


def _drained(buffer: io.StringIO) -> bytes:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text.encode("utf-8")
